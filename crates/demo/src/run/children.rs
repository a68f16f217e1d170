//! The children and their changes, each through the child's own API: starting servers, the
//! balancer (or haproxy) and the aggregator; adding, draining and replacing servers behind
//! the balancer's admin API; bots started and SIGTERMed; the rate through `PUT /api/load`.

use super::{Balancer, Demo, DemoError, Halt, Server};
use crate::api;
use crate::scenario::{Load, Phase};
use crate::supervise::Child;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

impl Demo<'_> {
    pub(super) fn start(&mut self, first: &Phase) -> Result<(), Halt> {
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
        match &self.load {
            Load::Rate(r) => args.extend(["--rate".into(), r.to_string()]),
            // The demo ends its run itself (POST /api/finish): a --run-for past any demo keeps
            // the stages from ending it and holds their last rate (4 years, which the events
            // write as "4years").
            Load::Schedule(s) => {
                args.extend(strings(&["--rate", &s.text(), "--run-for", "1461days"]))
            }
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
    pub(super) fn start_balancer(&mut self) -> Result<String, Halt> {
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
    pub(super) fn start_haproxy(&mut self) -> Result<String, Halt> {
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

    pub(super) fn start_server(&mut self) -> Result<Server, Halt> {
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
    pub(super) fn health(&self, addr: SocketAddr) -> Result<Option<String>, Halt> {
        let text = api::ok(self.admin(), "GET", "/backends", Some(&self.token), "")?;
        let list: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        Ok(list
            .iter()
            .find(|b| b["addr"].as_str() == Some(&addr.to_string()))
            .and_then(|b| b["health"].as_str().map(str::to_string)))
    }

    pub(super) fn wait_health(
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
    pub(super) fn add_server(&mut self) -> Result<(), Halt> {
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
    pub(super) fn retire_server(&mut self, i: usize) -> Result<(), Halt> {
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
    pub(super) fn replace_server(&mut self, i: usize) -> Result<(), Halt> {
        self.add_server()?;
        self.retire_server(i)
    }

    pub(super) fn scale_servers(&mut self, n: u32) -> Result<(), Halt> {
        while self.servers.len() < n as usize {
            self.add_server()?;
        }
        while self.servers.len() > n as usize {
            // The newest goes first.
            self.retire_server(self.servers.len() - 1)?;
        }
        Ok(())
    }

    pub(super) fn scale_bots(&mut self, n: u32) -> Result<(), Halt> {
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
                self.set_load(self.load.clone())?;
            }
        }
        Ok(())
    }

    /// Wait until the aggregator counts `n` live bots.
    pub(super) fn wait_live(&mut self, n: usize) -> Result<(), Halt> {
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

    pub(super) fn set_load(&mut self, load: Load) -> Result<(), Halt> {
        let body = match &load {
            Load::Rate(r) => serde_json::json!({ "rate": r }),
            Load::Schedule(_) => serde_json::json!({ "rate": load.rate_text() }),
            Load::Connections(c) => {
                let per = c.div_ceil(self.bots.len().max(1) as u64);
                serde_json::json!({ "connections_per_bot": per })
            }
        };
        self.load = load;
        api::ok(
            self.agg(),
            "PUT",
            "/api/load",
            Some(&self.token),
            &body.to_string(),
        )?;
        Ok(())
    }

    pub(super) fn rollout(&mut self, v: &str) -> Result<(), Halt> {
        self.version = v.to_string();
        while let Some(i) = self.servers.iter().position(|s| s.version != v) {
            self.replace_server(i)?;
        }
        Ok(())
    }
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}
