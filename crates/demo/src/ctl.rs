//! `scaletest ctl` ↔ a running demo, through files in the run directory's `ctl/` folder.
//!
//! `ctl` writes `ctl/ID.req` (JSON [`Command`], written under another name and renamed, so
//! it is never read half-written); the demo, between two steps of its scenario, renames it to
//! `ID.taken`, acts, and writes `ID.reply` (renamed into place the same way); `ctl` prints the
//! reply and removes both. The run directory is the demo's own (mode 0700), so no token is
//! needed, and no port: a demo is found through its directory, as the issue asks.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// What `ctl` can ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Servers and/or bots to this many.
    Scale {
        /// Server replicas.
        servers: Option<u32>,
        /// Loadbots.
        bots: Option<u32>,
    },
    /// Replace every server not on this version.
    Rollout(String),
    /// Total req/s over the bots (open loop).
    Rate(f64),
    /// Closed loop, connections in total.
    Connections(u64),
    /// What runs.
    Status,
}

impl Command {
    /// `scale servers=8 bots=6`, `rollout v3`, `rate 50000`, `connections 30`, `status`.
    pub fn parse(words: &[String]) -> Result<Command, String> {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let num = |s: &str, what: &str| -> Result<u32, String> {
            s.parse::<u32>()
                .ok()
                .filter(|n| (1..=crate::scenario::MAX_REPLICAS).contains(n))
                .ok_or_else(|| {
                    format!(
                        "{what}={s}: give a number in 1..={}",
                        crate::scenario::MAX_REPLICAS
                    )
                })
        };
        match w.as_slice() {
            ["scale", rest @ ..] if !rest.is_empty() => {
                let (mut servers, mut bots) = (None, None);
                for kv in rest {
                    match kv.split_once('=') {
                        Some(("servers", v)) => servers = Some(num(v, "servers")?),
                        Some(("bots", v)) => bots = Some(num(v, "bots")?),
                        _ => return Err(format!("scale: {kv:?} is not servers=N or bots=N")),
                    }
                }
                Ok(Command::Scale { servers, bots })
            }
            ["rollout", v] => {
                crate::scenario::check_version(v)?;
                Ok(Command::Rollout(v.to_string()))
            }
            ["rate", r] => match r.parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 && x <= crate::scenario::MAX_RATE => {
                    Ok(Command::Rate(x))
                }
                _ => Err(format!("rate {r}: give req/s > 0")),
            },
            ["connections", c] => match c.parse::<u64>() {
                Ok(n) if (1..=100_000).contains(&n) => Ok(Command::Connections(n)),
                _ => Err(format!("connections {c}: give a number in 1..=100000")),
            },
            ["status"] => Ok(Command::Status),
            _ => Err(format!(
                "unknown command {:?}: scale servers=N bots=N | rollout VERSION | rate N | connections N | status",
                words.join(" ")
            )),
        }
    }

    /// As a user would type it (for events).
    pub fn text(&self) -> String {
        match self {
            Command::Scale { servers, bots } => {
                let mut s = "scale".to_string();
                if let Some(n) = servers {
                    s += &format!(" servers={n}");
                }
                if let Some(n) = bots {
                    s += &format!(" bots={n}");
                }
                s
            }
            Command::Rollout(v) => format!("rollout {v}"),
            Command::Rate(r) => format!("rate {r}"),
            Command::Connections(c) => format!("connections {c}"),
            Command::Status => "status".into(),
        }
    }
}

/// A ctl call that failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// No demo in that directory.
    #[error("no running demo in {0}")]
    NoDemo(String),
    /// The demo did not answer in time.
    #[error("the demo in {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The files could not be written or read.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

fn folder(run: &Path) -> PathBuf {
    run.join("ctl")
}

/// The run directory `dir` names: itself if it holds a demo, else its `latest` link.
pub fn resolve(dir: &Path) -> PathBuf {
    if dir.join("demo.pid").exists() {
        dir.to_path_buf()
    } else {
        dir.join("latest")
    }
}

/// True if the demo whose pid is in `run/demo.pid` is alive.
pub fn alive(run: &Path) -> bool {
    std::fs::read_to_string(run.join("demo.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Send a command and wait for the reply.
pub fn send(run: &Path, cmd: &Command, within: Duration) -> Result<String, CtlError> {
    if !alive(run) {
        return Err(CtlError::NoDemo(run.display().to_string()));
    }
    let dir = folder(run);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let id = format!("{nanos}-{}", std::process::id());
    let io = |p: &Path, e| CtlError::Io(p.display().to_string(), e);
    let tmp = dir.join(format!("{id}.tmp"));
    let req = dir.join(format!("{id}.req"));
    std::fs::write(&tmp, serde_json::to_vec(cmd).expect("serializable"))
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &req).map_err(|e| io(&req, e))?;
    let reply = dir.join(format!("{id}.reply"));
    let deadline = Instant::now() + within;
    loop {
        if let Ok(text) = std::fs::read_to_string(&reply) {
            let _ = std::fs::remove_file(&reply);
            let _ = std::fs::remove_file(dir.join(format!("{id}.taken")));
            return Ok(text);
        }
        if Instant::now() >= deadline || !alive(run) {
            let _ = std::fs::remove_file(&req);
            return Err(CtlError::Timeout(run.display().to_string(), within));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The demo's side: commands waiting, oldest first; each is taken (renamed) once.
pub fn take(run: &Path) -> Vec<(String, Result<Command, String>)> {
    let dir = folder(run);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".req"))
                .map(str::to_string)
        })
        .collect();
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        let taken = dir.join(format!("{id}.taken"));
        if std::fs::rename(dir.join(format!("{id}.req")), &taken).is_err() {
            continue;
        }
        let cmd = std::fs::read(&taken)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("bad request: {e}")));
        out.push((id, cmd));
    }
    out
}

/// The demo's side: the reply to `id`.
pub fn reply(run: &Path, id: &str, text: &str) {
    let dir = folder(run);
    let tmp = dir.join(format!("{id}.rtmp"));
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join(format!("{id}.reply")));
    }
}

/// Create the channel's folder.
pub fn open(run: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(folder(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn commands_parse_as_typed_and_print_back() {
        for s in [
            "scale servers=8",
            "scale bots=6",
            "scale servers=2 bots=3",
            "rollout v3",
            "rate 50000",
            "status",
        ] {
            assert_eq!(Command::parse(&words(s)).unwrap().text(), s);
        }
        assert!(Command::parse(&words("scale servers=0")).is_err());
        assert!(Command::parse(&words("scale pods=3")).is_err());
        assert!(Command::parse(&words("rate -1")).is_err());
        assert!(Command::parse(&words("launch")).is_err());
    }

    #[test]
    fn a_request_is_taken_once_and_answered() {
        let run = std::env::temp_dir().join(format!("st-ctl-{}", std::process::id()));
        open(&run).unwrap();
        std::fs::write(run.join("demo.pid"), std::process::id().to_string()).unwrap();
        let r2 = run.clone();
        let demo = std::thread::spawn(move || loop {
            let got = take(&r2);
            if let Some((id, cmd)) = got.into_iter().next() {
                assert_eq!(cmd.unwrap(), Command::Rate(5.0));
                reply(&r2, &id, "rate set");
                assert!(take(&r2).is_empty());
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        });
        let out = send(&run, &Command::Rate(5.0), Duration::from_secs(10)).unwrap();
        assert_eq!(out, "rate set");
        demo.join().unwrap();
        let _ = std::fs::remove_dir_all(&run);
    }
}
