//! Child processes that cannot outlive the demo.
//!
//! Each child is `scaletest <subcommand>` with stdout and stderr in its own log file under the
//! run directory. Three layers make orphans impossible:
//! - [`Child`] kills and reaps its process when dropped (errors, panics, the normal end);
//! - every child is in a process group of its own, so a terminal's Ctrl-C reaches only the
//!   demo, which then stops the children in order (a server drains, a bot pushes its last
//!   second) instead of all of them at once;
//! - every child asks the kernel for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), which
//!   covers a SIGKILL of the demo itself. The signal follows the *thread* that forked, so
//!   the demo spawns every child from its main thread.

use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A child that could not start or that stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// Spawning failed (the binary is missing, no file descriptors, ...).
    #[error("cannot start {name}: {source} (log: {log})")]
    Spawn {
        /// Which child.
        name: String,
        /// Where its log is.
        log: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited or stayed silent before saying where it listens.
    #[error("{name} did not start: {why} (log: {log})")]
    NotReady {
        /// Which child.
        name: String,
        /// Where its log is.
        log: String,
        /// What happened, with the last line of its log.
        why: String,
    },
    /// It exited while it was supposed to be running.
    #[error("{name} exited unexpectedly ({status}) (log: {log})")]
    Exited {
        /// Which child.
        name: String,
        /// Where its log is.
        log: String,
        /// Its exit status.
        status: String,
    },
}

/// The environment variable that marks a demo's children with its run directory.
pub const TAG_VAR: &str = "SCALETEST_DEMO_RUN";

/// CPU time a process used, user + system, in seconds.
pub type CpuSeconds = f64;

/// One supervised child.
pub struct Child {
    /// `server-3`, `bot-1`, `balancer`, `aggregator`.
    pub name: String,
    /// Its log file.
    pub log: PathBuf,
    /// Its address (from its "listening on http://ADDR" line), once known.
    pub addr: Option<SocketAddr>,
    /// The CPU it had used when last sampled (its total once it has exited).
    pub cpu: CpuSeconds,
    process: Option<std::process::Child>,
}

impl Child {
    /// Start `bin args...` with its output in `log`; `tag` goes into its environment as
    /// [`TAG_VAR`], so that a run's processes can be found in /proc.
    pub fn spawn(
        name: &str,
        bin: &Path,
        args: &[String],
        log: PathBuf,
        tag: &str,
    ) -> Result<Child, ChildError> {
        let err = |source| ChildError::Spawn {
            name: name.to_string(),
            log: log.display().to_string(),
            source,
        };
        let out = File::create(&log).map_err(err)?;
        let errf = out.try_clone().map_err(err)?;
        let parent = nix::unistd::getpid();
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(errf)
            .env(TAG_VAR, tag)
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only makes two
        // async-signal-safe system calls (prctl, getppid) and may `_exit`; it allocates nothing.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)?;
                // The parent may have died before the line above: then no signal will come.
                if nix::unistd::getppid() != parent {
                    nix::libc::_exit(1);
                }
                Ok(())
            });
        }
        let process = cmd.spawn().map_err(err)?;
        Ok(Child {
            name: name.to_string(),
            log,
            addr: None,
            cpu: 0.0,
            process: Some(process),
        })
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.id())
    }

    /// The CPU it has used until now (its total once it has exited).
    pub fn cpu_now(&self) -> CpuSeconds {
        self.pid().and_then(cpu_seconds).unwrap_or(self.cpu)
    }

    /// Wait until its log has a line with `marker` followed by `http://ADDR`, and return
    /// that line. Fails if it exits first or after `within`.
    pub fn wait_line(&mut self, marker: &str, within: Duration) -> Result<String, ChildError> {
        let deadline = Instant::now() + within;
        loop {
            let text = read_text(&self.log);
            if let Some(line) = text.lines().find(|l| l.contains(marker)) {
                if let Some(a) = line
                    .split("http://")
                    .nth(1)
                    .and_then(|r| r.split(|c: char| c.is_whitespace() || c == '/').next())
                    .and_then(|a| a.parse().ok())
                {
                    self.addr = Some(a);
                    return Ok(line.to_string());
                }
            }
            if let Some(status) = self.exited() {
                return Err(self.not_ready(format!("it exited ({status})")));
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(format!("no address after {within:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn not_ready(&self, why: String) -> ChildError {
        let text = read_text(&self.log);
        let last = text.lines().rev().find(|l| !l.trim().is_empty());
        ChildError::NotReady {
            name: self.name.clone(),
            log: self.log.display().to_string(),
            why: match last {
                Some(l) => format!("{why}; its log ends: {}", l.trim()),
                None => why,
            },
        }
    }

    /// `Some(status)` once it has exited (reaped here; its CPU is read first).
    pub fn exited(&mut self) -> Option<String> {
        let p = self.process.as_mut()?;
        if let Some(cpu) = cpu_seconds(p.id()) {
            self.cpu = cpu;
        }
        match p.try_wait() {
            Ok(Some(s)) => {
                self.process = None;
                Some(s.to_string())
            }
            Ok(None) => None,
            Err(e) => {
                self.process = None;
                Some(e.to_string())
            }
        }
    }

    /// An error if it has exited.
    pub fn check(&mut self) -> Result<(), ChildError> {
        match self.exited() {
            None => Ok(()),
            Some(status) => Err(ChildError::Exited {
                name: self.name.clone(),
                log: self.log.display().to_string(),
                status,
            }),
        }
    }

    /// Send SIGTERM (the graceful stop every subcommand implements).
    pub fn terminate(&self) {
        if let Some(p) = &self.process {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// SIGTERM, then wait for it to exit; SIGKILL after `grace`. True if it exited by itself.
    pub fn stop(&mut self, grace: Duration) -> bool {
        self.terminate();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.process.is_none() || self.exited().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            // Its whole process group: anything it may have started goes too.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(p.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_text(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// User + system CPU seconds of a process from `/proc/PID/stat` (a zombie still has them).
pub fn cpu_seconds(pid: u32) -> Option<CpuSeconds> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of the man page are utime and stime; `rest` starts at field 3.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Some(ticks / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds(std::process::id()).is_some());
    }

    #[test]
    fn a_child_that_exits_at_once_is_reported_with_its_log() {
        let dir = std::env::temp_dir().join(format!("st-demo-sup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Child::spawn(
            "oops",
            Path::new("/bin/sh"),
            &["-c".into(), "echo broken config >&2; exit 3".into()],
            dir.join("oops.log"),
            "test",
        )
        .unwrap();
        let e = c
            .wait_line("listening on", Duration::from_secs(5))
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("oops did not start"), "{text}");
        assert!(text.contains("broken config"), "{text}");
        assert!(text.contains("oops.log"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
