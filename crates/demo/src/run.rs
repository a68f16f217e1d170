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

use crate::api::{self, ApiError};
use crate::ctl::{self, Command};
use crate::phases::{self, PhaseResult};
use crate::scenario::{Load, Phase, Scenario, Search};
use crate::supervise::{Child, ChildError};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn random_token() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    let mut s: String = b.iter().map(|x| format!("{x:02x}")).collect();
    if b == [0u8; 16] {
        // No /dev/urandom: the pid and the time, unique on this machine.
        s = format!("{:x}{:016x}", std::process::id(), now_unix().to_bits());
    }
    s
}

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
        load: first.load.expect("the first phase has a load (checked)"),
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

    fn start(&mut self, first: &Phase) -> Result<(), Halt> {
        for _ in 0..first.servers.unwrap_or(1) {
            let s = self.start_server()?;
            self.servers.push(s);
        }
        let url = self.start_balancer()?;
        let mut args = strings(&["aggregate", &url, "--bind", "127.0.0.1:0"]);
        args.extend(["--token-file".into(), self.token_file.display().to_string()]);
        args.extend([
            "--out".into(),
            self.cfg.run_dir.join("results").display().to_string(),
        ]);
        match self.load {
            Load::Rate(r) => args.extend(["--rate".into(), r.to_string()]),
            Load::Connections(c) => {
                let bots = first.bots.unwrap_or(1) as u64;
                args.extend(["-c".into(), c.div_ceil(bots).to_string()])
            }
        }
        for t in &self.cfg.thresholds {
            args.extend(["--threshold".into(), t.to_string()]);
        }
        let mut agg = self.child("aggregator", &args)?;
        agg.wait_line("listening on", Duration::from_secs(10))?;
        self.agg_addr = agg.addr;
        self.agg = Some(agg);
        let ui = format!("http://{}/#token={}", self.agg(), self.token);
        if self.cfg.headless {
            self.say(&format!("run directory: {}", self.cfg.run_dir.display()));
        } else {
            self.say(&format!("UI: {ui}"));
            self.say(&format!("run directory: {}", self.cfg.run_dir.display()));
        }
        let admin = self
            .lb_admin
            .map(|a| format!("admin http://{a}"))
            .unwrap_or_else(|| format!("{}", self.cfg.run_dir.join("haproxy.cfg").display()));
        self.say(&format!(
            "balancer: {} {url} ({admin}); ctl: scaletest ctl --dir {} status",
            self.cfg.balancer.name(),
            self.cfg.run_dir.display()
        ));
        let info = serde_json::json!({
            "pid": std::process::id(),
            "ui": ui,
            "aggregator": self.agg().to_string(),
            "balancer": url,
            "balancer_kind": self.cfg.balancer.name(),
            "admin": self.lb_admin.map(|a| a.to_string()),
            "token_file": self.token_file,
        });
        let path = self.cfg.run_dir.join("demo.json");
        std::fs::write(&path, info.to_string())
            .map_err(|e| DemoError::Io(path.display().to_string(), e))?;
        self.scale_bots(first.bots.unwrap_or(1))?;
        Ok(())
    }

    /// Start the balancer in front of the servers; its URL.
    fn start_balancer(&mut self) -> Result<String, Halt> {
        if self.cfg.balancer == Balancer::Haproxy {
            return self.start_haproxy();
        }
        let mut args = strings(&[
            "balance",
            "--bind",
            "127.0.0.1:0",
            "--admin-bind",
            "127.0.0.1:0",
            "--health-interval",
            "100ms",
            "--threads",
            "1",
        ]);
        args.push("--admin-token-file".into());
        args.push(self.token_file.display().to_string());
        for s in &self.servers {
            args.push("--backend".into());
            args.push(
                s.child
                    .addr
                    .expect("a started server has an address")
                    .to_string(),
            );
        }
        let mut lb = self.child("balancer", &args)?;
        let line = lb.wait_line("listening on", Duration::from_secs(10))?;
        self.lb_admin = line
            .split("admin on http://")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|a| a.parse().ok());
        if self.lb_admin.is_none() {
            return Err(DemoError::Timeout(format!(
                "the balancer did not say where its admin API is (log: {})",
                lb.log.display()
            ))
            .into());
        }
        let url = format!("http://{}/", lb.addr.expect("address read"));
        self.lb = Some(lb);
        Ok(url)
    }

    /// haproxy with the servers there are now; ready once it answers through them.
    fn start_haproxy(&mut self) -> Result<String, Halt> {
        let io = |p: &Path, e| DemoError::Io(p.display().to_string(), e);
        // A free port: haproxy cannot report one it chose.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| io(Path::new("127.0.0.1:0"), e))?;
        let mut cfg = format!(
            "global\n  nbthread 1\n  maxconn 8000\n\
             defaults\n  mode http\n  option http-keep-alive\n  timeout connect 2s\n\
             \x20 timeout client 30s\n  timeout server 30s\n  timeout http-request 10s\n\
             \x20 maxconn 8000\n\
             frontend fe\n  bind {addr}\n  default_backend be\n\
             backend be\n  balance roundrobin\n  option httpchk GET /readyz\n"
        );
        for s in &self.servers {
            cfg += &format!(
                "  server {} {} check inter 100ms\n",
                s.child.name,
                s.child.addr.expect("a started server has an address")
            );
        }
        let path = self.cfg.run_dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).map_err(|e| io(&path, e))?;
        let args = vec!["-db".to_string(), "-f".into(), path.display().to_string()];
        let mut lb = Child::spawn(
            "balancer",
            Path::new("haproxy"),
            &args,
            self.logs.join("balancer.log"),
            &self.cfg.run_dir.display().to_string(),
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(api::call(addr, "GET", "/", None, ""), Ok((200, _))) {
            lb.check()?;
            if Instant::now() >= deadline {
                return Err(DemoError::Timeout(format!(
                    "haproxy did not answer on {addr} within 10 s (log: {})",
                    lb.log.display()
                ))
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        lb.addr = Some(addr);
        self.lb = Some(lb);
        Ok(format!("http://{addr}/"))
    }

    fn start_server(&mut self) -> Result<Server, Halt> {
        self.next_server += 1;
        let name = format!("server-{}", self.next_server);
        let version = self.version.clone();
        let drain = format!("{}ms", self.cfg.drain_delay.as_millis());
        let args = strings(&[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--threads",
            "1",
            "--version-label",
            &version,
            "--drain-delay",
            &drain,
        ]);
        let mut child = self.child(&name, &args)?;
        child.wait_line("listening on", Duration::from_secs(10))?;
        let addr = child.addr.expect("address read");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(api::call(addr, "GET", "/readyz", None, ""), Ok((200, _))) {
            if Instant::now() >= deadline {
                return Err(DemoError::Timeout(format!(
                    "{name} never became ready (log: {})",
                    child.log.display()
                ))
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Server { child, version })
    }

    /// The balancer's health of `addr` ("up", "draining", "down"), or None if not a backend.
    fn health(&self, addr: SocketAddr) -> Result<Option<String>, Halt> {
        let text = api::ok(self.admin(), "GET", "/backends", Some(&self.token), "")?;
        let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        Ok(list
            .iter()
            .find(|b| b["addr"].as_str() == Some(&addr.to_string()))
            .and_then(|b| b["health"].as_str().map(str::to_string)))
    }

    fn wait_health(
        &mut self,
        addr: SocketAddr,
        want: &dyn Fn(Option<&str>) -> bool,
        what: &str,
    ) -> Result<(), Halt> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if want(self.health(addr)?.as_deref()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(
                    DemoError::Timeout(format!("the balancer never saw {addr} {what}")).into(),
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Start a server of the current version and put it behind the balancer.
    fn add_server(&mut self) -> Result<(), Halt> {
        let s = self.start_server()?;
        let addr = s.child.addr.expect("address read");
        self.servers.push(s);
        api::ok(
            self.admin(),
            "POST",
            "/backends",
            Some(&self.token),
            &addr.to_string(),
        )?;
        self.wait_health(addr, &|h| h == Some("up"), "up")
    }

    /// Take server `i` out: drain through its readiness, stop, remove.
    fn retire_server(&mut self, i: usize) -> Result<(), Halt> {
        let addr = self.servers[i].child.addr.expect("address read");
        self.servers[i].child.terminate();
        self.wait_health(addr, &|h| h != Some("up"), "drain")?;
        let mut s = self.servers.remove(i);
        let grace = self.cfg.drain_delay + Duration::from_secs(10);
        s.child.stop(grace);
        self.spent.push(("server".into(), s.child.cpu));
        api::ok(
            self.admin(),
            "DELETE",
            &format!("/backends/{addr}"),
            Some(&self.token),
            "",
        )?;
        Ok(())
    }

    /// Replace server `i` with one of the current version.
    fn replace_server(&mut self, i: usize) -> Result<(), Halt> {
        self.add_server()?;
        self.retire_server(i)
    }

    fn scale_servers(&mut self, n: u32) -> Result<(), Halt> {
        while self.servers.len() < n as usize {
            self.add_server()?;
        }
        while self.servers.len() > n as usize {
            // The newest goes first.
            self.retire_server(self.servers.len() - 1)?;
        }
        Ok(())
    }

    fn scale_bots(&mut self, n: u32) -> Result<(), Halt> {
        let n = n as usize;
        let before = self.bots.len();
        while self.bots.len() < n {
            self.next_bot += 1;
            let name = format!("bot-{}", self.next_bot);
            let args = vec![
                "bot".to_string(),
                "--aggregator".into(),
                format!("http://{}", self.agg()),
                "--token-file".into(),
                self.token_file.display().to_string(),
                "--name".into(),
                name.clone(),
                "-t".into(),
                "1".into(),
            ];
            let c = self.child(&name, &args)?;
            self.bots.push(c);
        }
        if self.bots.len() > n {
            let mut leaving: Vec<Child> = self.bots.drain(n..).collect();
            // All at once: each drains and pushes its last second in parallel.
            for b in &leaving {
                b.terminate();
            }
            for b in &mut leaving {
                b.stop(Duration::from_secs(15));
                self.spent.push(("loadbot".into(), b.cpu));
            }
        }
        if self.bots.len() != before {
            self.wait_live(n)?;
            // A closed loop's connections per bot depend on how many bots there are.
            if let Load::Connections(_) = self.load {
                self.set_load(self.load)?;
            }
        }
        Ok(())
    }

    /// Wait until the aggregator counts `n` live bots.
    fn wait_live(&mut self, n: usize) -> Result<(), Halt> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = api::ok(self.agg(), "GET", "/api/summary", None, "")?;
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if v["live"].as_u64() == Some(n as u64) {
                return Ok(());
            }
            for b in &mut self.bots {
                b.check()?;
            }
            if Instant::now() >= deadline {
                return Err(DemoError::Timeout(format!(
                    "the aggregator did not see {n} live bots within 15 s (it sees {})",
                    v["live"]
                ))
                .into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn set_load(&mut self, load: Load) -> Result<(), Halt> {
        self.load = load;
        let body = match load {
            Load::Rate(r) => serde_json::json!({ "rate": r }),
            Load::Connections(c) => {
                let per = c.div_ceil(self.bots.len().max(1) as u64);
                serde_json::json!({ "connections_per_bot": per })
            }
        };
        api::ok(
            self.agg(),
            "PUT",
            "/api/load",
            Some(&self.token),
            &body.to_string(),
        )?;
        Ok(())
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

    fn rollout(&mut self, v: &str) -> Result<(), Halt> {
        self.version = v.to_string();
        while let Some(i) = self.servers.iter().position(|s| s.version != v) {
            self.replace_server(i)?;
        }
        Ok(())
    }

    fn status(&self) -> String {
        let mut s = format!(
            "scenario {}, phase {}\nload: {}\nbalancer: {}\nservers: {}\n",
            self.cfg.scenario.name,
            self.phase,
            describe(self.load),
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

    /// One phase: its steps of one replica, its rollout, events, and its span.
    fn run_phase(
        &mut self,
        label: &str,
        first: bool,
        p: &Phase,
        spans: &mut Vec<Span>,
    ) -> Result<(), Halt> {
        self.phase = format!("{label} {}", p.name);
        let start = now_unix();
        let t0 = Instant::now();
        let from_s = self.servers.len() as u32;
        let from_b = self.bots.len() as u32;
        let to_s = p.servers.unwrap_or(from_s);
        let to_b = p.bots.unwrap_or(from_b);
        let from_l = self.load;
        let to_l = p.load.unwrap_or(from_l);
        let mut desc = format!(
            "phase {label}: {} ({:.1} s)",
            p.name,
            p.duration.as_secs_f64()
        );
        if from_s != to_s || first {
            desc += &format!(", servers {from_s}→{to_s}");
        }
        if from_b != to_b || first {
            desc += &format!(", bots {from_b}→{to_b}");
        }
        desc += &format!(", load {}", describe(to_l));
        if let Some(v) = &p.rollout {
            desc += &format!(", rolling update to {v}");
        }
        self.event(&desc)?;
        let span_of = |a: u32, b: u32| {
            if a == b {
                format!("{b}")
            } else {
                format!("{a}→{b}")
            }
        };
        let ran = format!(
            "servers {}, bots {}, load {}{}",
            span_of(from_s, to_s),
            span_of(from_b, to_b),
            if from_l == to_l {
                describe(to_l)
            } else {
                format!("{} → {}", describe(from_l), describe(to_l))
            },
            p.rollout
                .as_ref()
                .map_or(String::new(), |v| format!(", rolling update to {v}"))
        );
        let steps = from_s.abs_diff(to_s).max(from_b.abs_diff(to_b));
        let steps = if steps == 0 && from_l != to_l {
            1
        } else {
            steps
        };
        // One slot per replacement; servers added by the steps are replaced too.
        let rolls = if p.rollout.is_some() {
            from_s.max(to_s)
        } else {
            0
        };
        let slot = p.duration / (steps + rolls).max(1);
        for k in 1..=steps {
            self.pump(t0 + slot * (k - 1))?;
            let f = k as f64 / steps as f64;
            let s = step(from_s, to_s, f);
            let b = step(from_b, to_b, f);
            let l = between(from_l, to_l, f);
            let lower = rate_of(l) < rate_of(self.load);
            if lower {
                self.set_load(l)?;
            }
            if s > self.servers.len() as u32 {
                self.scale_servers(s)?;
            }
            self.scale_bots(b)?;
            if s < self.servers.len() as u32 {
                self.scale_servers(s)?;
            }
            if !lower && l != self.load {
                self.set_load(l)?;
            }
        }
        if let Some(v) = &p.rollout {
            self.version = v.clone();
            let mut k = steps;
            while let Some(j) = self.servers.iter().position(|s| &s.version != v) {
                self.pump(t0 + slot * k)?;
                let old = self.servers[j].child.name.clone();
                self.replace_server(j)?;
                let new = self
                    .servers
                    .last()
                    .map(|s| s.child.name.clone())
                    .unwrap_or_default();
                self.event(&format!("{old} replaced by {new} ({v})"))?;
                k += 1;
            }
        }
        self.pump(t0 + p.duration)?;
        spans.push(Span {
            name: p.name.clone(),
            start,
            end: now_unix(),
            load: Some(self.load),
            checks: p.checks.clone(),
            ran,
        });
        Ok(())
    }

    /// `[search]`: steps of the last rate × factor until one is not sustained, judged on the
    /// aggregator's merged seconds of each step as the sustained rate is.
    fn search(&mut self, search: Search, spans: &mut Vec<Span>) -> Result<(), Halt> {
        let Load::Rate(mut rate) = self.load else {
            return Ok(());
        };
        let p99 = self.cfg.scenario.sustain_p99_ms;
        for k in 1.. {
            // Round to hundreds: step names stay readable.
            rate = ((rate * search.factor) / 100.0).round() * 100.0;
            if rate > search.until_rate {
                self.event(&format!(
                    "search: {rate}/s would pass until_rate {}: the search stops there",
                    search.until_rate
                ))?;
                break;
            }
            let step = Phase {
                name: format!("{rate}/s"),
                duration: search.duration,
                load: Some(Load::Rate(rate)),
                servers: None,
                bots: None,
                rollout: None,
                checks: Vec::new(),
            };
            self.run_phase(&format!("search {k}"), false, &step, spans)?;
            // Judged as the sustained rate is: on the step's seconds after the take-up.
            let (start, end) = spans.last().map_or((0.0, 0.0), |s| (s.start, s.end));
            let take_up = phases::TAKE_UP_S as f64;
            let (total, seconds) = self.window((start + take_up).min(end - 1.0), end)?;
            if !phases::sustains(&total, seconds, rate, p99) {
                self.event(&format!(
                    "search: {rate}/s not sustained ({:.0}/s served, {} failed, p99 {:.2} ms): the search stops",
                    total.responses as f64 / seconds.max(1.0),
                    total.failed(),
                    total.quantile_ms(0.99)
                ))?;
                break;
            }
        }
        Ok(())
    }

    /// What the aggregator measured in the seconds whose middle falls in `start..end` (as
    /// [`phases::slice`] cuts a phase), once it has heard every one of them.
    fn window(&mut self, start: f64, end: f64) -> Result<(hist::Snapshot, f64), Halt> {
        let from = (start - 0.5).ceil() as u64;
        let to = ((end - 0.5).ceil() as u64).max(from + 1);
        let path = format!("/api/window?from={from}&to={to}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = api::ok(self.agg(), "GET", &path, Some(&self.token), "")?;
            let w: report::Window = serde_json::from_str(&text)
                .map_err(|e| DemoError::Results(format!("GET {path}"), e.to_string()))?;
            if w.settled || Instant::now() >= deadline {
                return Ok((w.snapshot, (to - from) as f64));
            }
            self.pump(Instant::now() + Duration::from_millis(250))?;
        }
    }

    fn scenario(&mut self, spans: &mut Vec<Span>) -> Result<(), Halt> {
        let cfg = self.cfg;
        let n = cfg.scenario.phases.len();
        for (i, p) in cfg.scenario.phases.iter().enumerate() {
            self.run_phase(&format!("{}/{n}", i + 1), i == 0, p, spans)?;
        }
        if let Some(search) = cfg.scenario.search {
            self.search(search, spans)?;
        }
        if self.cfg.keep {
            self.phase = "kept".into();
            let start = now_unix();
            self.event("scenario done; everything keeps running (scaletest ctl acts on it); Ctrl-C ends the run")?;
            let r = self.pump(Instant::now() + Duration::from_secs(365 * 24 * 3600));
            spans.push(Span {
                name: "kept".into(),
                start,
                end: now_unix(),
                load: Some(self.load),
                checks: Default::default(),
                ran: format!(
                    "servers {}, bots {}, load {} (as ctl left them)",
                    self.servers.len(),
                    self.bots.len(),
                    describe(self.load)
                ),
            });
            return r;
        }
        Ok(())
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
                ..phases::evaluate(&run, &s.name, s.start, s.end, s.load, &s.checks)
            })
            .collect();
        let sustained = phases::sustained(&phases, self.cfg.scenario.sustain_p99_ms)
            .map(|(name, rate)| (name.to_string(), rate));
        let mut roles: Vec<(String, f64)> = Vec::new();
        for role in ["loadbot", "balancer", "server", "aggregator"] {
            let cpu = self
                .spent
                .iter()
                .filter(|(r, _)| r == role)
                .map(|(_, c)| c)
                .sum();
            roles.push((role.to_string(), cpu));
        }
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

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn clock() -> String {
    let s = now_unix() as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn describe(l: Load) -> String {
    match l {
        Load::Rate(r) => format!("{r} req/s"),
        Load::Connections(c) => format!("{c} connections"),
    }
}

fn step(from: u32, to: u32, f: f64) -> u32 {
    (from as f64 + (to as f64 - from as f64) * f).round() as u32
}

fn rate_of(l: Load) -> f64 {
    match l {
        Load::Rate(r) => r,
        Load::Connections(c) => c as f64,
    }
}

/// The load a fraction `f` of the way from `a` to `b`; a change of kind happens at once.
fn between(a: Load, b: Load, f: f64) -> Load {
    match (a, b) {
        (Load::Rate(x), Load::Rate(y)) => Load::Rate((x + (y - x) * f).round()),
        (Load::Connections(x), Load::Connections(y)) => {
            Load::Connections((x as f64 + (y as f64 - x as f64) * f).round() as u64)
        }
        (_, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_move_one_replica_at_a_time_and_the_rate_with_them() {
        let f = |k: u32| k as f64 / 3.0;
        assert_eq!(
            (1..=3).map(|k| step(1, 4, f(k))).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(
            (1..=3).map(|k| step(4, 1, f(k))).collect::<Vec<_>>(),
            [3, 2, 1]
        );
        assert_eq!(
            between(Load::Rate(1000.0), Load::Rate(4000.0), f(1)),
            Load::Rate(2000.0)
        );
        assert_eq!(
            between(Load::Rate(1.0), Load::Connections(5), 0.5),
            Load::Connections(5)
        );
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
