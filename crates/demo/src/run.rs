//! The phase runner: starts the children, walks the scenario, answers `ctl`, and at the end
//! collects the aggregator's run file into per-phase results and sizing.
//!
//! Start order: servers, then the balancer (it needs a first backend), then the aggregator
//! (its load targets the balancer), then the bots. Every change is driven through the
//! children's own APIs: the balancer's admin API for backends, the aggregator's
//! `PUT /api/load` for the rate, SIGTERM for graceful stops. A server is always replaced in
//! the order `crates/cli/tests/rollout.rs` proved: start the new one, wait until it is
//! ready, add it, wait until the balancer has it up, SIGTERM the old one (its /readyz turns
//! 503 and the balancer's health check takes it out while it keeps answering for its drain
//! delay), wait for its exit, remove it.
//!
//! Everything runs on the calling thread, which is also the thread that forks every child
//! (see [`crate::supervise`] on the parent-death signal).
//!
//! Here: the run's start and end, the wait between steps (children, Ctrl-C, `ctl`) and `ctl`'s
//! commands; `children.rs`: starting the children and changing them; `walk.rs`: the phases,
//! their steps and `[search]`.

use crate::api::{self, ApiError};
use crate::ctl::{self, Command};
use crate::phases::{self, PhaseResult};
use crate::scenario::{Load, Scenario};
use crate::supervise::{Child, ChildError};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod children;
mod walk;

/// How a demo runs.
pub struct Config {
    /// The `scaletest` binary the children run.
    pub bin: PathBuf,
    /// This run's directory (see [`prepare_run_dir`]).
    pub run_dir: PathBuf,
    /// The phases.
    pub scenario: Scenario,
    /// No UI address printed (for CI and scripts).
    pub headless: bool,
    /// After the scenario, keep everything running until `stop`.
    pub keep: bool,
    /// Set by Ctrl-C: end the run early (the results are still collected).
    pub stop: Arc<AtomicBool>,
    /// A server's drain delay after SIGTERM.
    pub drain_delay: Duration,
    /// What spreads the load over the servers.
    pub balancer: Balancer,
    /// Thresholds on the whole run (the aggregator judges them into results.json).
    pub thresholds: Vec<report::threshold::Threshold>,
}

/// What spreads the load over the servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balancer {
    /// `scaletest balance`: servers come and go through its admin API.
    #[default]
    Scaletest,
    /// Debian's haproxy (one thread, round robin, the same 100 ms health checks on /readyz),
    /// to compare the layout with it: a fixed set of servers, so no scaling or rollout.
    Haproxy,
}

impl Balancer {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Balancer::Scaletest => "scaletest",
            Balancer::Haproxy => "haproxy",
        }
    }
}

/// A demo that could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A child failed to start or stopped on its own.
    #[error(transparent)]
    Child(#[from] ChildError),
    /// A control call to a child failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The run directory or a result file.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A child did not reach the wanted state in time.
    #[error("{0}")]
    Timeout(String),
    /// The aggregator's results could not be read.
    #[error("cannot read the results {0}: {1}")]
    Results(String, String),
    /// The scenario asks for something this layout cannot do.
    #[error("{0}")]
    Unsupported(String),
}

/// What a finished demo measured.
pub struct Outcome {
    /// One per phase run (fewer if interrupted), plus "kept" for the time after with --keep.
    pub phases: Vec<PhaseResult>,
    /// The aggregator's results.json.
    pub results: PathBuf,
    /// The aggregator's report.html.
    pub report: PathBuf,
    /// CPU per request by role.
    pub sizing: Sizing,
    /// The highest open-loop rate served with p99 under the scenario's `sustain_p99_ms` and
    /// no failures (see [`phases::sustained`]): (phase, responses/s).
    pub sustained: Option<(String, f64)>,
    /// Ctrl-C ended it early.
    pub interrupted: bool,
    /// The whole run's thresholds, as the aggregator judged them.
    pub verdicts: Vec<report::threshold::Verdict>,
}

impl Outcome {
    /// Every phase met its checks, the whole run its thresholds, and it was not interrupted.
    pub fn passed(&self) -> bool {
        !self.interrupted
            && self.phases.iter().all(|p| p.missed.is_empty())
            && report::threshold::all_pass(&self.verdicts)
    }
}

/// CPU used by each role over the run, from `/proc/PID/stat`, and the responses it served.
#[derive(Debug, Clone, Default)]
pub struct Sizing {
    /// Responses over the whole run.
    pub requests: u64,
    /// (role, CPU seconds), in flow order.
    pub roles: Vec<(String, f64)>,
}

impl Sizing {
    /// The sizing table: CPU per request and cores for one million requests per second.
    pub fn table(&self) -> String {
        let mut rows = vec![vec![
            "Role".to_string(),
            "CPU s".into(),
            "CPU µs/req".into(),
            "req/s per core".into(),
            "cores for 1M req/s".into(),
        ]];
        for (role, cpu) in &self.roles {
            let per = if self.requests > 0 {
                cpu / self.requests as f64
            } else {
                0.0
            };
            rows.push(vec![
                role.clone(),
                format!("{cpu:.2}"),
                format!("{:.1}", per * 1e6),
                if per > 0.0 {
                    format!("{:.0}", 1.0 / per)
                } else {
                    "–".into()
                },
                format!("{:.1}", per * 1e6),
            ]);
        }
        report::table::boxed(&rows)
    }
}

/// Which role a step saturated: each role's cores over `seconds` (CPU used between two
/// readings of `Demo::cpu_by_role`) against the machine's `cores`, the busiest named.
pub fn saturated(
    before: &[(&str, f64)],
    after: &[(&str, f64)],
    seconds: f64,
    cores: usize,
) -> String {
    let used: Vec<(&str, f64)> = after
        .iter()
        .map(|(role, a)| {
            let b = before.iter().find(|(r, _)| r == role).map_or(0.0, |x| x.1);
            (*role, ((a - b) / seconds.max(0.001)).max(0.0))
        })
        .collect();
    let total: f64 = used.iter().map(|x| x.1).sum();
    let each: Vec<String> = used.iter().map(|(r, c)| format!("{r} {c:.2}")).collect();
    let busiest = used
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or("none", |x| x.0);
    let whole = if total >= 0.9 * cores as f64 {
        "the machine's cores were full"
    } else {
        "the machine had cores to spare"
    };
    format!(
        "cores used: {} of {cores} ({whole}); the busiest: {busiest}",
        each.join(", ")
    )
}

/// Create `base/run-UNIXTIME` (mode 0700) and point `base/latest` at it.
pub fn prepare_run_dir(base: &Path) -> Result<PathBuf, DemoError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |p: &Path, e| DemoError::Io(p.display().to_string(), e);
    std::fs::create_dir_all(base).map_err(|e| io(base, e))?;
    let secs = now_unix() as u64;
    let mut dir = base.join(format!("run-{secs}"));
    if dir.exists() {
        dir = base.join(format!("run-{secs}-{}", std::process::id()));
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io(&dir, e))?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let latest = base.join("latest");
    let _ = std::fs::remove_file(&latest);
    let name = dir.file_name().expect("a run directory has a name");
    let _ = std::os::unix::fs::symlink(name, &latest);
    Ok(dir)
}

pub(crate) use st_http::stamp::{now_unix, random_hex as random_token};

/// One target server.
struct Server {
    child: Child,
    version: String,
}

/// Why the scenario stopped early.
enum Halt {
    Interrupted,
    Failed(DemoError),
}

impl<E: Into<DemoError>> From<E> for Halt {
    fn from(e: E) -> Self {
        Halt::Failed(e.into())
    }
}

/// A phase as it ran.
struct Span {
    name: String,
    start: f64,
    end: f64,
    load: Option<Load>,
    checks: Vec<report::threshold::Threshold>,
    /// What it ran: servers, bots and load from its start to its end.
    ran: String,
}

struct Demo<'a> {
    cfg: &'a Config,
    out: &'a mut dyn Write,
    token: String,
    token_file: PathBuf,
    logs: PathBuf,
    servers: Vec<Server>,
    bots: Vec<Child>,
    lb: Option<Child>,
    agg: Option<Child>,
    lb_admin: Option<SocketAddr>,
    agg_addr: Option<SocketAddr>,
    next_server: u32,
    next_bot: u32,
    version: String,
    load: Load,
    phase: String,
    /// CPU seconds of children that have exited, by role.
    spent: Vec<(String, f64)>,
}

/// Run the scenario; `out` gets the UI address first, then progress and the results.
pub fn run(cfg: &Config, out: &mut dyn Write) -> Result<Outcome, DemoError> {
    check_layout(cfg.balancer, &cfg.scenario)?;
    let io = |p: &Path, e| DemoError::Io(p.display().to_string(), e);
    let logs = cfg.run_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| io(&logs, e))?;
    ctl::open(&cfg.run_dir).map_err(|e| io(&cfg.run_dir, e))?;
    let token = random_token();
    let token_file = cfg.run_dir.join("token");
    write_private(&token_file, &format!("{token}\n")).map_err(|e| io(&token_file, e))?;
    let pid_file = cfg.run_dir.join("demo.pid");
    std::fs::write(&pid_file, std::process::id().to_string()).map_err(|e| io(&pid_file, e))?;
    let first = &cfg.scenario.phases[0];
    let mut d = Demo {
        cfg,
        out,
        token,
        token_file,
        logs,
        servers: Vec::new(),
        bots: Vec::new(),
        lb: None,
        agg: None,
        lb_admin: None,
        agg_addr: None,
        next_server: 0,
        next_bot: 0,
        version: "v1".into(),
        load: first
            .load
            .clone()
            .expect("the first phase has a load (checked)"),
        phase: "start".into(),
        spent: Vec::new(),
    };
    let mut spans = Vec::new();
    let halt = match d.start(first) {
        Ok(()) => d.scenario(&mut spans).err(),
        Err(h) => Some(h),
    };
    let interrupted = match halt {
        None => false,
        Some(Halt::Interrupted) => true,
        Some(Halt::Failed(e)) => {
            // Every child is killed when `d` drops.
            let _ = std::fs::remove_file(&pid_file);
            return Err(e);
        }
    };
    let outcome = d.finish(spans, interrupted);
    let _ = std::fs::remove_file(&pid_file);
    outcome
}

/// Whether `balancer` can run `scenario`, before anything starts.
pub fn check_layout(balancer: Balancer, scenario: &Scenario) -> Result<(), DemoError> {
    if balancer == Balancer::Haproxy {
        if let Some(p) = scenario.changes_servers() {
            return Err(DemoError::Unsupported(format!(
                "--balancer haproxy runs a fixed set of servers, but phase {:?} changes them \
                 (servers or rollout); use the max-rate scenario or one without such changes",
                p.name
            )));
        }
        if which("haproxy").is_none() {
            return Err(DemoError::Unsupported(
                "--balancer haproxy: haproxy is not installed (apt-get install haproxy)".into(),
            ));
        }
    }
    Ok(())
}

/// `name`'s path if it is an executable file on PATH.
fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| {
                p.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    })
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

impl Demo<'_> {
    fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }

    /// An event on the UI's charts, and a line on stdout.
    fn event(&mut self, text: &str) -> Result<(), Halt> {
        self.say(&format!("[{}] {text}", clock()));
        let body = serde_json::json!({ "text": text }).to_string();
        api::ok(self.agg(), "POST", "/api/events", Some(&self.token), &body)?;
        Ok(())
    }

    fn agg(&self) -> SocketAddr {
        self.agg_addr.expect("the aggregator runs")
    }

    fn admin(&self) -> SocketAddr {
        self.lb_admin.expect("the balancer runs")
    }

    fn child(&self, name: &str, args: &[String]) -> Result<Child, ChildError> {
        Child::spawn(
            name,
            &self.cfg.bin,
            args,
            self.logs.join(format!("{name}.log")),
            &self.cfg.run_dir.display().to_string(),
        )
    }

    /// Wait until `until`, watching the children, Ctrl-C and `ctl`.
    fn pump(&mut self, until: Instant) -> Result<(), Halt> {
        loop {
            if self.cfg.stop.load(Ordering::Relaxed) {
                return Err(Halt::Interrupted);
            }
            for c in self
                .servers
                .iter_mut()
                .map(|s| &mut s.child)
                .chain(self.bots.iter_mut())
                .chain(self.lb.iter_mut())
                .chain(self.agg.iter_mut())
            {
                c.check()?;
            }
            for (id, cmd) in ctl::take(&self.cfg.run_dir) {
                let reply = match cmd {
                    Ok(c) => match self.act(&c) {
                        Ok(text) => text,
                        Err(Halt::Interrupted) => return Err(Halt::Interrupted),
                        Err(Halt::Failed(e)) => {
                            ctl::reply(&self.cfg.run_dir, &id, &format!("failed: {e}"));
                            return Err(Halt::Failed(e));
                        }
                    },
                    Err(e) => format!("failed: {e}"),
                };
                ctl::reply(&self.cfg.run_dir, &id, &reply);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(Duration::from_millis(100)));
        }
    }

    /// One `ctl` command.
    fn act(&mut self, c: &Command) -> Result<String, Halt> {
        if *c == Command::Status {
            return Ok(self.status());
        }
        let fixed = match c {
            Command::Scale {
                servers: Some(_), ..
            }
            | Command::Rollout(_) => self.cfg.balancer == Balancer::Haproxy,
            _ => false,
        };
        if fixed {
            return Ok(format!(
                "refused: {}: this demo runs haproxy, with a fixed set of servers",
                c.text()
            ));
        }
        self.event(&format!("ctl: {}", c.text()))?;
        match c {
            Command::Scale { servers, bots } => {
                if let Some(n) = servers {
                    self.scale_servers(*n)?;
                }
                if let Some(n) = bots {
                    self.scale_bots(*n)?;
                }
            }
            Command::Rollout(v) => self.rollout(v)?,
            Command::Rate(r) => self.set_load(Load::Rate(*r))?,
            Command::Connections(n) => self.set_load(Load::Connections(*n))?,
            Command::Status => {}
        }
        Ok(format!("done: {}\n{}", c.text(), self.status()))
    }

    fn status(&self) -> String {
        let mut s = format!(
            "scenario {}, phase {}\nload: {}\nbalancer: {}\nservers: {}\n",
            self.cfg.scenario.name,
            self.phase,
            describe(&self.load),
            self.cfg.balancer.name(),
            self.servers.len()
        );
        for x in &self.servers {
            s += &format!(
                "  {} {} http://{} pid {}\n",
                x.child.name,
                x.version,
                x.child.addr.map(|a| a.to_string()).unwrap_or_default(),
                x.child.pid().unwrap_or(0)
            );
        }
        s += &format!("bots: {}\n", self.bots.len());
        for b in &self.bots {
            s += &format!("  {} pid {}\n", b.name, b.pid().unwrap_or(0));
        }
        if let Ok(text) = api::ok(self.agg(), "GET", "/api/summary", None, "") {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            s += &format!(
                "aggregator: {} responses, {} failed, p99 {} ms, live bots {}, versions {}\n",
                v["requests"], v["errors"], v["p99_ms"], v["live"], v["versions"]
            );
        }
        s
    }

    /// Stop the bots (each pushes its last second), end the run, stop the rest, and cut the
    /// run file into phases.
    fn finish(mut self, spans: Vec<Span>, interrupted: bool) -> Result<Outcome, DemoError> {
        if interrupted {
            self.say("interrupted: stopping, the results so far follow");
        }
        if self.agg_addr.is_some() {
            let _ = self.event("end of the run");
        }
        let _ = self.scale_bots(0);
        let results = self.cfg.run_dir.join("results").join("results.json");
        let report = self.cfg.run_dir.join("results").join("report.html");
        if let Some(mut agg) = self.agg.take() {
            let _ = api::ok(self.agg(), "POST", "/api/finish", Some(&self.token), "");
            let deadline = Instant::now() + Duration::from_secs(40);
            while agg.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            agg.kill();
            self.spent.push(("aggregator".into(), agg.cpu));
        }
        for s in &self.servers {
            s.child.terminate();
        }
        if let Some(lb) = &self.lb {
            lb.terminate();
        }
        let grace = self.cfg.drain_delay + Duration::from_secs(10);
        for mut s in std::mem::take(&mut self.servers) {
            s.child.stop(grace);
            self.spent.push(("server".into(), s.child.cpu));
        }
        if let Some(mut lb) = self.lb.take() {
            lb.stop(Duration::from_secs(10));
            self.spent.push(("balancer".into(), lb.cpu));
        }
        let run = report::RunFile::read(&results)
            .map_err(|e| DemoError::Results(results.display().to_string(), e.to_string()))?;
        let phases: Vec<PhaseResult> = spans
            .iter()
            .map(|s| PhaseResult {
                ran: s.ran.clone(),
                ..phases::evaluate(&run, &s.name, s.start, s.end, s.load.clone(), &s.checks)
            })
            .collect();
        let sustained = phases::sustained(&phases, self.cfg.scenario.sustain_p99_ms)
            .map(|(name, rate)| (name.to_string(), rate));
        // Every child has stopped: what each role spent.
        let roles: Vec<(String, f64)> = self
            .cpu_by_role()
            .into_iter()
            .map(|(role, cpu)| (role.to_string(), cpu))
            .collect();
        Ok(Outcome {
            phases,
            results,
            report,
            sizing: Sizing {
                requests: run.total.responses,
                roles,
            },
            sustained,
            interrupted,
            verdicts: run.verdicts.clone(),
        })
    }
}

impl Demo<'_> {
    /// CPU seconds used so far by each role: its exited processes' and its running ones'.
    fn cpu_by_role(&self) -> Vec<(&'static str, f64)> {
        let spent = |role: &str| -> f64 {
            self.spent
                .iter()
                .filter(|(r, _)| r == role)
                .map(|(_, c)| c)
                .sum()
        };
        let live = |children: &mut dyn Iterator<Item = &Child>| -> f64 {
            children.map(Child::cpu_now).sum()
        };
        vec![
            ("loadbot", spent("loadbot") + live(&mut self.bots.iter())),
            ("balancer", spent("balancer") + live(&mut self.lb.iter())),
            (
                "server",
                spent("server") + live(&mut self.servers.iter().map(|s| &s.child)),
            ),
            (
                "aggregator",
                spent("aggregator") + live(&mut self.agg.iter()),
            ),
        ]
    }
}

fn clock() -> String {
    let s = now_unix() as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn describe(l: &Load) -> String {
    match l {
        Load::Rate(r) => format!("{r} req/s"),
        Load::Schedule(s) => format!("{s} (req/s)"),
        Load::Connections(c) => format!("{c} connections"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step's CPU by role, in cores over the step, names the busiest and says whether the
    /// machine's cores were full.
    #[test]
    fn a_step_names_the_role_that_used_the_most_cores() {
        let before = [
            ("loadbot", 10.0),
            ("balancer", 8.0),
            ("server", 4.0),
            ("aggregator", 1.0),
        ];
        let after = [
            ("loadbot", 16.0),
            ("balancer", 14.6),
            ("server", 6.4),
            ("aggregator", 1.0),
        ];
        assert_eq!(
            saturated(&before, &after, 6.0, 2),
            "cores used: loadbot 1.00, balancer 1.10, server 0.40, aggregator 0.00 of 2 \
             (the machine's cores were full); the busiest: balancer"
        );
        let quiet = [
            ("loadbot", 10.6),
            ("balancer", 8.3),
            ("server", 4.1),
            ("aggregator", 1.0),
        ];
        assert!(saturated(&before, &quiet, 6.0, 2).contains("cores to spare"));
    }

    #[test]
    fn sizing_projects_cores_for_a_million_requests_per_second() {
        let s = Sizing {
            requests: 100_000,
            roles: vec![("server".into(), 5.0)],
        };
        // 50 µs per request: 20,000 req/s per core, 50 cores for 1M.
        let t = s.table();
        assert!(t.contains("50.0"), "{t}");
        assert!(t.contains("20000"), "{t}");
    }
}
