//! rustls client configuration: system-independent roots (webpki-roots), an extra CA file, or
//! no verification at all (`--insecure`), with ALPN chosen by protocol.

use crate::Protocol;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

/// How to verify the server.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Accept any certificate (test servers with self-signed certificates).
    pub insecure: bool,
    /// A PEM file of CA certificates to trust, in addition to the public roots.
    pub ca_file: Option<PathBuf>,
}

/// TLS settings that cannot be used. Bad input: never retryable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file is missing or unreadable.
    #[error("cannot read CA file {0}: {1}")]
    CaFile(PathBuf, String),
    /// The CA file holds no usable certificate.
    #[error("CA file {0} holds no usable PEM certificate")]
    NoCerts(PathBuf),
}

/// Build the client config for `protocol`: ALPN offers exactly that protocol.
pub fn client_config(
    opts: &TlsOptions,
    protocol: Protocol,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let mut cfg = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &opts.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| TlsError::CaFile(path.clone(), e.to_string()))?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                let cert = cert.map_err(|e| TlsError::CaFile(path.clone(), e.to_string()))?;
                if roots.add(cert).is_ok() {
                    added += 1;
                }
            }
            if added == 0 {
                return Err(TlsError::NoCerts(path.clone()));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    cfg.alpn_protocols = match protocol {
        Protocol::Http1 => vec![b"http/1.1".to_vec()],
        Protocol::Http2 => vec![b"h2".to_vec()],
    };
    Ok(cfg)
}

/// Accepts every certificate but still checks handshake signatures, so the session is
/// encrypted with the key the server presented.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
