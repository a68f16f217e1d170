//! One module per subcommand: its clap arguments, their conversion into the library's typed
//! configuration, and one call into the library.

pub mod aggregate;
pub mod api;
pub mod api_run;
pub mod balance;
pub mod bot;
pub mod ctl;
pub mod demo;
pub mod k8s;
pub mod k8s_runner;
pub mod load;
pub mod nodes;
pub mod report;
pub mod serve;

use std::time::Duration;

/// Ctrl-C: the first calls `stop` (the run ends early and still reports), a second exits at
/// once with 130. Call inside a tokio runtime.
pub(crate) fn on_ctrl_c(stop: impl FnOnce() + Send + 'static) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
}

/// Ctrl-C: the first stops the run gracefully (it reports), the second exits at once.
pub(crate) fn stop_on_ctrl_c() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    on_ctrl_c(move || {
        eprintln!("scaletest: stopping (Ctrl-C again to quit at once)");
        let _ = tx.send(true);
    });
    rx
}

/// Until `duration` has passed (if given) or `stop` is true, whichever comes first.
pub(crate) async fn until_stopped(
    duration: Option<Duration>,
    stop: &tokio::sync::watch::Receiver<bool>,
) {
    let mut stopping = stop.clone();
    match duration {
        Some(d) => tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stopping.wait_for(|s| *s) => {}
        },
        None => {
            let _ = stopping.wait_for(|s| *s).await;
        }
    }
}

/// TLS towards clients, shared by the servers (`serve`, `balance`).
#[derive(clap::Args)]
pub(crate) struct ServerTls {
    /// PEM certificate chain for TLS (ALPN h2 and http/1.1).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<std::path::PathBuf>,
    /// Serve TLS with a fresh self-signed certificate for localhost and 127.0.0.1.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    tls_self_signed: bool,
}

impl ServerTls {
    /// The rustls config the flags ask for, or `None` for cleartext.
    pub(crate) fn config(
        &self,
    ) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, crate::Usage> {
        let bad = |e: &dyn std::fmt::Display| crate::Usage(e.to_string());
        let cfg = if self.tls_self_signed {
            Some(
                st_http::tls::self_signed_server_config()
                    .map_err(|e| bad(&e))?
                    .0,
            )
        } else if let (Some(c), Some(k)) = (&self.tls_cert, &self.tls_key) {
            Some(st_http::tls::server_config_from_files(c, k).map_err(|e| bad(&e))?)
        } else {
            None
        };
        Ok(cfg.map(std::sync::Arc::new))
    }

    /// The URL scheme clients use.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls_self_signed || self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// SIGTERM and SIGINT, the signals that start a server's graceful shutdown.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Start listening for both (inside a tokio runtime).
    pub(crate) fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next SIGTERM or SIGINT.
    pub(crate) async fn recv(&mut self) {
        tokio::select! { _ = self.term.recv() => {}, _ = self.int.recv() => {} }
    }
}

/// A bearer token from `--token` or `--token-file` (trimmed), if either was given.
pub(crate) fn token_from(
    token: &Option<String>,
    file: &Option<std::path::PathBuf>,
) -> Result<Option<String>, crate::Usage> {
    token_as("--token-file", token, file)
}

/// [`token_from`] for a token file given as `flag`.
fn token_as(
    flag: &str,
    token: &Option<String>,
    file: &Option<std::path::PathBuf>,
) -> Result<Option<String>, crate::Usage> {
    let t = match (token, file) {
        (Some(t), _) => t.trim().to_string(),
        (None, Some(p)) => std::fs::read_to_string(p)
            .map_err(|e| crate::Usage(format!("cannot read {flag} {}: {e}", p.display())))?
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    if t.is_empty() || t.contains(char::is_whitespace) {
        return Err(crate::Usage(
            "the token must be non-empty with no spaces".into(),
        ));
    }
    Ok(Some(t))
}

/// `--pprof`: the profiling endpoint (`st_prof`) of the long-running commands.
#[derive(clap::Args)]
pub(crate) struct Pprof {
    /// Serve CPU profiles at http://ADDR/debug/pprof/profile?seconds=N (pprof's format, for
    /// `go tool pprof` or speedscope); a loopback address unless --pprof-token-file is given.
    #[arg(long, value_name = "ADDR")]
    pprof: Option<std::net::SocketAddr>,
    /// Bearer token every request to --pprof must carry (Authorization: Bearer TOKEN).
    #[arg(long, value_name = "FILE", requires = "pprof")]
    pprof_token_file: Option<std::path::PathBuf>,
}

impl Pprof {
    /// The endpoint, if asked for; keep it for as long as the command runs.
    pub(crate) fn start(&self) -> anyhow::Result<Option<st_prof::Running>> {
        let Some(bind) = self.pprof else {
            return Ok(None);
        };
        let token = token_as("--pprof-token-file", &None, &self.pprof_token_file)?;
        match st_prof::start(st_prof::Config { bind, token }) {
            Ok(r) => Ok(Some(r)),
            Err(e @ st_prof::Error::Exposed(_)) => {
                Err(crate::Usage(format!("--pprof: {e}: give --pprof-token-file")).into())
            }
            Err(e) => Err(anyhow::Error::new(e).context("--pprof")),
        }
    }
}

/// How every command names the profiling endpoint's address (on its first lines).
pub(crate) fn pprof_on(r: &st_prof::Running) -> String {
    format!("pprof on http://{}", r.addr)
}

/// `--threads`, or the CPUs this process may use (which respects `taskset`).
pub(crate) fn threads_or_cpus(threads: Option<u64>) -> usize {
    threads
        .map(|t| t as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A count of at least 1 with no upper bound of its own (clap's `range(1..)` would name
/// u64::MAX as one): "0" gets "must be at least 1".
pub(crate) fn at_least_one(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A duration as users write it: `30s`, `2m`, `500ms`, or plain seconds; must be > 0.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => return Err(format!("invalid duration {s:?}")),
        Err(_) => {
            humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))?
        }
    };
    if d.is_zero() {
        return Err("duration must be > 0".into());
    }
    Ok(d)
}

/// A duration that may be zero (`0`, `0s`), e.g. "no drain delay".
pub(crate) fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    if s.trim_end_matches('s').trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}
