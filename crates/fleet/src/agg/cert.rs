//! The aggregator's own certificate (`aggregate --tls-self-signed`): made once per run
//! directory and kept in `OUT/tls/` (the key mode 0600), so that an aggregator restarted on
//! the same `--out` serves the same certificate and the bots' `--cacert` stays right.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the certificate and its key are.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The certificate (PEM): also the CA file bots are given (`--cacert`).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Made now (false: the run directory had them).
    pub made: bool,
}

/// The certificate in `out/tls/`, made for `names` (and localhost) when not there yet.
pub fn self_signed(out: &Path, names: &[String]) -> Result<SelfSigned, String> {
    let dir = out.join("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok(SelfSigned {
            cert,
            key,
            made: false,
        });
    }
    let (cert_pem, key_pem) = st_http::tls::self_signed_pem(names).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    // The key first: the certificate's presence says both are complete.
    write_private(&key, key_pem.as_bytes())?;
    crate::store::write_atomic(&cert, cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    Ok(SelfSigned {
        cert,
        key,
        made: true,
    })
}

/// Write `bytes` to `path` through a temporary file made with mode 0600, then renamed.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r.map_err(|e| format!("cannot write {}: {e}", path.display()))
}
