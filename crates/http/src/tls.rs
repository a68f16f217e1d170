//! rustls configurations, client and server, made here and nowhere else: system-independent
//! roots (webpki-roots), an extra CA file, or no verification at all (`--insecure`), with ALPN
//! chosen by protocol; server configs from PEM files or self-signed, and self-signed
//! certificates as PEM for servers that keep them (the aggregator, a `k8s` run's Secret).
//!
//! With `SSLKEYLOGFILE` set, every config logs its TLS secrets to that file in the NSS key log
//! format (rustls `KeyLogFile`, appending; a new file is made with mode 0600), so that a capture
//! of `load`, `serve` or `balance` traffic can be decrypted in Wireshark. Unset: nothing logged.

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
    /// `SSLKEYLOGFILE` names a file that cannot be opened for appending.
    #[error("{0}")]
    KeyLog(String),
}

/// The `SSLKEYLOGFILE` key log, shared by every config of the process (one file handle, so
/// lines from many connections never interleave), or None when the variable is unset.
/// The file is made (mode 0600: it holds session secrets) and checked before rustls opens it,
/// because rustls only logs a failure to open it, and a user who asked for a key log must
/// hear that there will be none.
pub fn key_log() -> Result<Option<Arc<dyn rustls::KeyLog>>, String> {
    static LOG: std::sync::OnceLock<Result<Option<Arc<dyn rustls::KeyLog>>, String>> =
        std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let Some(path) = std::env::var_os("SSLKEYLOGFILE").filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&path).map_err(|e| {
            format!(
                "SSLKEYLOGFILE {}: cannot open for appending: {e}",
                std::path::Path::new(&path).display()
            )
        })?;
        Ok(Some(
            Arc::new(rustls::KeyLogFile::new()) as Arc<dyn rustls::KeyLog>
        ))
    })
    .clone()
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
    let cfg = if opts.insecure {
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
            add_pem(&mut roots, &pem, path)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    finish_client(cfg, protocol)
}

/// A client config that trusts only the CA certificates in `ca_pem` (a server of our own
/// whose CA we hold: a `k8s` run's aggregator).
pub fn client_config_trusting(
    ca_pem: &[u8],
    protocol: Protocol,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    add_pem(&mut roots, ca_pem, std::path::Path::new("(the CA given)"))?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    finish_client(cfg, protocol)
}

/// Add the PEM certificates of `pem` (read from `path`) to `roots`: at least one.
fn add_pem(
    roots: &mut rustls::RootCertStore,
    pem: &[u8],
    path: &std::path::Path,
) -> Result<(), TlsError> {
    let mut added = 0;
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| TlsError::CaFile(path.to_path_buf(), e.to_string()))?;
        if roots.add(cert).is_ok() {
            added += 1;
        }
    }
    if added == 0 {
        return Err(TlsError::NoCerts(path.to_path_buf()));
    }
    Ok(())
}

/// ALPN for `protocol` and the key log.
fn finish_client(
    mut cfg: rustls::ClientConfig,
    protocol: Protocol,
) -> Result<rustls::ClientConfig, TlsError> {
    cfg.alpn_protocols = match protocol {
        Protocol::Http1 => vec![b"http/1.1".to_vec()],
        Protocol::Http2 => vec![b"h2".to_vec()],
    };
    if let Some(log) = key_log().map_err(TlsError::KeyLog)? {
        cfg.key_log = log;
    }
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

/// A server certificate that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServerTlsError(String);

/// A server config (ALPN h2 and http/1.1) from PEM certificate chain and key files.
pub fn server_config_from_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, ServerTlsError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| ServerTlsError(format!("cannot read {}: {e}", p.display())))
    };
    pem_server_config(
        &read(cert)?,
        &read(key)?,
        &cert.display().to_string(),
        &key.display().to_string(),
    )
}

/// A server config (ALPN h2 and http/1.1) from a PEM certificate chain and key in memory.
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<rustls::ServerConfig, ServerTlsError> {
    pem_server_config(cert_pem, key_pem, "the certificate", "the key")
}

fn pem_server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert: &str,
    key: &str,
) -> Result<rustls::ServerConfig, ServerTlsError> {
    let chain = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerTlsError(format!("{cert}: {e}")))?;
    if chain.is_empty() {
        return Err(ServerTlsError(format!("{cert} holds no PEM certificate")));
    }
    let key_der = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| ServerTlsError(format!("{key}: {e}")))?
        .ok_or_else(|| ServerTlsError(format!("{key} holds no PEM private key")))?;
    server_config(chain, key_der)
}

/// A server config with a fresh self-signed certificate for `localhost` and `127.0.0.1`;
/// returns the certificate's PEM too, for clients that want to trust it.
pub fn self_signed_server_config() -> Result<(rustls::ServerConfig, String), ServerTlsError> {
    self_signed_server_config_for(&[])
}

/// [`self_signed_server_config`] whose certificate also names `extra` (host names or IP
/// addresses: a hollow kubelet's `--node-ip`).
pub fn self_signed_server_config_for(
    extra: &[String],
) -> Result<(rustls::ServerConfig, String), ServerTlsError> {
    let ck = self_signed(extra)?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    Ok((
        server_config(vec![ck.cert.der().clone()], key)?,
        ck.cert.pem(),
    ))
}

/// A self-signed certificate for `localhost`, `127.0.0.1`, `::1` and `extra`, as PEM: the
/// certificate (which clients trust as their CA: `--cacert`) and its private key (PKCS#8),
/// for a server that keeps them in files (the aggregator's `--out`, a run's Secret).
pub fn self_signed_pem(extra: &[String]) -> Result<(String, String), ServerTlsError> {
    let ck = self_signed(extra)?;
    Ok((ck.cert.pem(), ck.key_pair.serialize_pem()))
}

fn self_signed(extra: &[String]) -> Result<rcgen::CertifiedKey, ServerTlsError> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for e in extra {
        if !names.contains(e) {
            names.push(e.clone());
        }
    }
    rcgen::generate_simple_self_signed(names)
        .map_err(|e| ServerTlsError(format!("cannot make a certificate: {e}")))
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, ServerTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            ServerTlsError(format!("certificate and key do not make a TLS config: {e}"))
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if let Some(log) = key_log().map_err(ServerTlsError)? {
        cfg.key_log = log;
    }
    Ok(cfg)
}
