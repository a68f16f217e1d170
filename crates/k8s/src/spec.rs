//! What a run is: the validated inputs every manifest is built from ([`Spec`]), how a command
//! changes them ([`Changes`]), and sizing from measured per-core figures ([`size`]).
//!
//! The spec of a deployed run is kept on its namespace (annotation [`crate::ANN_SPEC`]), so
//! `scale`, `rollout` and a second `up` start from what is deployed, not from defaults.

use crate::Error;
use serde::{Deserialize, Serialize};

/// Everything the manifests of a run are made from. Checked by [`Spec::check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// The run's id: a DNS label; every object carries it in [`kapi::LABEL_RUN`].
    pub run: String,
    /// The namespace the run owns.
    pub namespace: String,
    /// The image holding the `scaletest` binary, used by every component.
    pub image: String,
    /// `IfNotPresent`, `Always` or `Never`.
    pub pull_policy: String,
    /// The version the servers report (`serve --version-label`); `rollout` changes it.
    pub version: String,
    /// Server replicas.
    pub servers: i32,
    /// Loadbot replicas.
    pub bots: i32,
    /// Total requests/s over all bots, as the aggregator starts with it.
    pub rate: f64,
    /// CPU per server pod, millicores (request = limit: the per-core figures assume a whole core).
    pub server_cpu_m: u32,
    /// CPU per bot pod, millicores.
    pub bot_cpu_m: u32,
    /// CPU of the aggregator pod, millicores.
    pub aggregator_cpu_m: u32,
    /// `serve --drain-delay`, seconds: how long a terminating server keeps answering.
    pub drain_delay_s: u32,
    /// The servers' own image, once `rollout --image` set one (`None`: `image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_image: Option<String>,
    /// The user's own service, loaded instead of `serve` (`up --target`): no servers are
    /// deployed, only the bots and the aggregator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetSpec>,
    /// Requests/s per bot (seed 000: the load grows with `scale bots=N`); `None`: `rate` is
    /// the total over the bots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_bot_rate: Option<f64>,
    /// Where the aggregator keeps its run (`up --state`).
    #[serde(default, skip_serializing_if = "RunState::is_empty_dir")]
    pub state: RunState,
}

/// Where the aggregator keeps its run directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RunState {
    /// An emptyDir: a restarted container picks the run up, a new pod (eviction, node loss)
    /// starts an empty one, which says in its events and results what it lost.
    #[default]
    EmptyDir,
    /// A PersistentVolumeClaim of this size (a quantity: `1Gi`) from the default
    /// StorageClass, ReadWriteOnce: the run outlives its pod.
    Pvc {
        /// The claim's storage request.
        size: String,
    },
}

impl RunState {
    /// The default: an emptyDir.
    pub fn is_empty_dir(&self) -> bool {
        *self == RunState::EmptyDir
    }
}

/// What the bots load when it is not the run's own `serve`: a URL and the request options
/// `scaletest load` takes for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetSpec {
    /// Any URL `scaletest load` accepts (http:// or https://), e.g. a Service's DNS name.
    pub url: String,
    /// Headers, "Name: value" (a Host header for a virtual host, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Do not verify the target's TLS certificate.
    #[serde(default)]
    pub insecure: bool,
    /// HTTP/2 (ALPN h2 over TLS, h2c over http://).
    #[serde(default)]
    pub http2: bool,
}

impl TargetSpec {
    /// The load spec a bot gets (its rate set by the aggregator).
    pub fn load_spec(&self) -> load::Spec {
        load::Spec {
            url: Some(self.url.clone()),
            headers: self.headers.clone(),
            insecure: self.insecure,
            http2: self.http2,
            ..load::Spec::default()
        }
    }
}

/// Default image: what `scripts/image.sh` builds and `kind load image-archive` loads.
pub const DEFAULT_IMAGE: &str = concat!("scaletest:", env!("CARGO_PKG_VERSION"));

impl Spec {
    /// A small run: one server, one bot, 1,000 req/s (seed 000's one loadbot).
    pub fn new(run: &str) -> Spec {
        Spec {
            run: run.to_string(),
            namespace: format!("scaletest-{run}"),
            image: DEFAULT_IMAGE.to_string(),
            pull_policy: "IfNotPresent".into(),
            version: "v1".into(),
            servers: 1,
            bots: 1,
            rate: 1000.0,
            server_cpu_m: 1000,
            bot_cpu_m: 1000,
            aggregator_cpu_m: 500,
            drain_delay_s: 5,
            server_image: None,
            target: None,
            per_bot_rate: None,
            state: RunState::EmptyDir,
        }
    }

    /// The Deployments this run has, in flow order.
    pub fn components(&self) -> &'static [&'static str] {
        if self.target.is_some() {
            &["aggregate", "bot"]
        } else {
            &crate::manifest::COMPONENTS
        }
    }

    /// The image the servers run.
    pub fn server_image(&self) -> &str {
        self.server_image.as_deref().unwrap_or(&self.image)
    }

    /// Check every field; the first problem as one line.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Usage(m));
        if !dns_label(&self.run) || self.run.len() > 40 {
            return bad(format!(
                "run {:?}: use lower-case letters, digits and '-', at most 40, starting with a letter",
                self.run
            ));
        }
        if !dns_label(&self.namespace) {
            return bad(format!(
                "namespace {:?} is not a DNS label (lower-case letters, digits, '-', ≤ 63)",
                self.namespace
            ));
        }
        for image in [Some(&self.image), self.server_image.as_ref()]
            .into_iter()
            .flatten()
        {
            if image.is_empty() || image.contains(char::is_whitespace) {
                return bad(format!("image {image:?}: give an image reference"));
            }
        }
        if !matches!(
            self.pull_policy.as_str(),
            "IfNotPresent" | "Always" | "Never"
        ) {
            return bad(format!(
                "pull policy {:?}: IfNotPresent, Always or Never",
                self.pull_policy
            ));
        }
        if !label_value(&self.version) || self.version.is_empty() {
            return bad(format!(
                "version {:?}: letters, digits, '-', '_', '.', at most 63, starting and ending alphanumeric",
                self.version
            ));
        }
        for (what, n) in [("servers", self.servers), ("bots", self.bots)] {
            if !(0..=100_000).contains(&n) {
                return bad(format!("{what}={n}: give 0 to 100000"));
            }
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1e9) {
            return bad(format!(
                "rate {}: give requests/s above 0, at most 1000000000",
                self.rate
            ));
        }
        for (what, m) in [
            ("server CPU", self.server_cpu_m),
            ("bot CPU", self.bot_cpu_m),
            ("aggregator CPU", self.aggregator_cpu_m),
        ] {
            if !(10..=64_000).contains(&m) {
                return bad(format!("{what} {m}m: give 10m to 64000m"));
            }
        }
        if self.drain_delay_s > 600 {
            return bad(format!("drain delay {}s: at most 600", self.drain_delay_s));
        }
        if let RunState::Pvc { size } = &self.state {
            if !quantity(size) {
                return bad(format!(
                    "state size {size:?}: give a quantity such as 1Gi or 500Mi"
                ));
            }
        }
        if let Some(r) = self.per_bot_rate {
            if !(r.is_finite() && r > 0.0 && r <= 1e9) {
                return bad(format!("per-bot rate {r}: above 0, at most 1000000000"));
            }
        }
        if let Some(t) = &self.target {
            if self.servers != 0 {
                return bad(format!(
                    "servers={}: a run with a target loads {} and has no servers",
                    self.servers, t.url
                ));
            }
            if self.server_image.is_some() {
                return bad("a run with a target has no servers to give an image".into());
            }
            // The aggregator checks the rest where the name resolves (inside the cluster).
            t.load_spec()
                .check_unresolved()
                .map_err(|e| Error::Usage(format!("target {}: {e}", t.url)))?;
        }
        Ok(())
    }

    /// This spec with `c` applied (and sized when `c.size_for` asks), checked.
    pub fn with(mut self, c: &Changes) -> Result<Spec, Error> {
        if let Some(rate) = c.size_for {
            let s = size(
                rate,
                &Figures::MEASURED,
                c.headroom.unwrap_or(DEFAULT_HEADROOM),
            )?;
            self.servers = s.servers;
            self.bots = s.bots;
            self.server_cpu_m = s.server_cpu_m;
            self.bot_cpu_m = s.bot_cpu_m;
            // Only ever more: a changed aggregator Deployment restarts the aggregator.
            self.aggregator_cpu_m = self.aggregator_cpu_m.max(s.aggregator_cpu_m);
        }
        let set = |slot: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                *slot = v.clone();
            }
        };
        set(&mut self.image, &c.image);
        set(&mut self.pull_policy, &c.pull_policy);
        set(&mut self.version, &c.version);
        if let Some(i) = &c.server_image {
            self.server_image = Some(i.clone());
        }
        if let Some(t) = &c.target {
            self.target = Some(t.clone());
        }
        if self.target.is_some() {
            // Sizing planned servers for the rate; a run with a target has none of its own.
            self.servers = 0;
        }
        if let Some(n) = c.servers {
            self.servers = n;
        }
        if let Some(n) = c.bots {
            self.bots = n;
        }
        if let Some(r) = c.rate {
            self.rate = r;
        }
        if let Some(d) = c.drain_delay_s {
            self.drain_delay_s = d;
        }
        if let Some(r) = c.per_bot_rate {
            self.per_bot_rate = Some(r);
        }
        if let Some(s) = &c.state {
            self.state = s.clone();
        }
        self.check()?;
        Ok(self)
    }
}

/// What a command changes in a spec; `None` keeps the deployed (or default) value.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// `--image`.
    pub image: Option<String>,
    /// `--pull-policy`.
    pub pull_policy: Option<String>,
    /// The server version.
    pub version: Option<String>,
    /// The servers' image alone (`rollout --image`).
    pub server_image: Option<String>,
    /// The user's own service to load (`up --target`).
    pub target: Option<TargetSpec>,
    /// Requests/s per bot.
    pub per_bot_rate: Option<f64>,
    /// Server replicas.
    pub servers: Option<i32>,
    /// Bot replicas.
    pub bots: Option<i32>,
    /// The aggregator's starting rate.
    pub rate: Option<f64>,
    /// Size servers, bots and CPU for this rate (explicit servers/bots still win); the rate
    /// itself is `rate`'s to set.
    pub size_for: Option<f64>,
    /// Fraction of a core's measured capacity to plan for (default [`DEFAULT_HEADROOM`]).
    pub headroom: Option<f64>,
    /// `--drain-delay` in seconds.
    pub drain_delay_s: Option<u32>,
    /// Where the aggregator keeps its run (`up --state`).
    pub state: Option<RunState>,
}

/// A storage quantity as a claim takes it: digits and a binary or decimal suffix.
fn quantity(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &s[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && digits.chars().any(|c| c != '0')
        && ["", "Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T"].contains(&suffix)
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn label_value(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

/// Measured per-core figures (BENCHMARKS.md: the server's 2026-11-29, the bot's 2026-12-06
/// 15:36, the aggregator's 2026-12-07 08:27; the project machine: 2 vCPU KVM guest, loopback,
/// release build).
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// `scaletest serve`'s CPU per response, µs (wrk → serve, 13-byte body, keep-alive).
    pub server_us_per_req: f64,
    /// A bot's CPU per request, µs (open loop at 10,000 req/s against `scaletest serve`).
    pub bot_us_per_req: f64,
    /// The aggregator's CPU per bot, in cores (1,000 bots pushing every second over TLS, as
    /// a cluster's aggregator serves them: 9.46 % of a core, `TLS=1 bench/fleet.sh`).
    pub aggregator_cores_per_bot: f64,
    /// p99 the server showed at its measured capacity (wrk, c50, saturated), ms.
    pub server_p99_ms: f64,
}

impl Figures {
    /// The figures this machine measured.
    pub const MEASURED: Figures = Figures {
        server_us_per_req: 15.99,
        bot_us_per_req: 27.79,
        aggregator_cores_per_bot: 0.0946 / 1000.0,
        server_p99_ms: 1.76,
    };
}

/// Plan servers and bots at this fraction of their measured per-core capacity: room for a
/// rolling update's surge, in-cluster networking (kube-proxy, veth) that loopback did not
/// pay, and tail latency, which grows as a core nears saturation.
pub const DEFAULT_HEADROOM: f64 = 0.5;

/// Replicas and CPU for a rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    /// Total requests/s.
    pub rate: f64,
    /// Server replicas (one core each).
    pub servers: i32,
    /// Bot replicas (one core each).
    pub bots: i32,
    /// Millicores per server pod.
    pub server_cpu_m: u32,
    /// Millicores per bot pod.
    pub bot_cpu_m: u32,
    /// Millicores for the aggregator.
    pub aggregator_cpu_m: u32,
    /// req/s one server is planned for.
    pub per_server: f64,
    /// req/s one bot is planned for.
    pub per_bot: f64,
    /// Cores in all (servers + bots + aggregator).
    pub cores: f64,
}

/// Size a run for `rate` req/s: one-core servers and bots, each planned at `headroom` of what
/// one core measured.
pub fn size(rate: f64, f: &Figures, headroom: f64) -> Result<Sizing, Error> {
    if !(rate.is_finite() && rate > 0.0 && rate <= 1e9) {
        return Err(Error::Usage(format!(
            "rate {rate}: give requests/s above 0, at most 1000000000"
        )));
    }
    if !(headroom > 0.0 && headroom <= 1.0) {
        return Err(Error::Usage(format!(
            "headroom {headroom}: give a fraction in (0, 1]"
        )));
    }
    let per_server = 1e6 / f.server_us_per_req * headroom;
    let per_bot = 1e6 / f.bot_us_per_req * headroom;
    let servers = (rate / per_server).ceil().max(1.0) as i32;
    let bots = (rate / per_bot).ceil().max(1.0) as i32;
    let agg_cores = (f64::from(bots) * f.aggregator_cores_per_bot / headroom).max(0.25);
    let aggregator_cpu_m = ((agg_cores * 1000.0 / 50.0).ceil() * 50.0) as u32;
    Ok(Sizing {
        rate,
        servers,
        bots,
        server_cpu_m: 1000,
        bot_cpu_m: 1000,
        aggregator_cpu_m,
        per_server,
        per_bot,
        cores: f64::from(servers) + f64::from(bots) + f64::from(aggregator_cpu_m) / 1000.0,
    })
}

/// Why a p99 target may not be met by a sizing (the figures cannot promise a tail below
/// what was measured at capacity); `None` when the target is above it.
pub fn p99_warning(p99_ms: f64, f: &Figures) -> Option<String> {
    (p99_ms < f.server_p99_ms).then(|| {
        format!(
            "a p99 of {p99_ms} ms is below the {} ms one server showed at its measured capacity on loopback: \
             sizing cannot promise it (lower --headroom and measure)",
            f.server_p99_ms
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_requests_a_second_takes_32_servers_and_56_bots_at_half_capacity() {
        let s = size(1e6, &Figures::MEASURED, 0.5).unwrap();
        // 1e6 / 15.99 µs = 62,539 req/s per core, half of it 31,270: 32 servers.
        assert_eq!(s.servers, 32);
        // 1e6 / 27.79 µs = 35,984 req/s per core, half of it 17,992: 56 bots.
        assert_eq!(s.bots, 56);
        // 56 bots × 0.0946 ms of aggregator CPU per bot-second / 0.5 = 11 m → the 250 m floor.
        assert_eq!(s.aggregator_cpu_m, 250);
        assert_eq!(s.cores, 88.25);
        let small = size(1000.0, &Figures::MEASURED, 0.5).unwrap();
        assert_eq!((small.servers, small.bots), (1, 1));
        assert!(size(0.0, &Figures::MEASURED, 0.5).is_err());
        assert!(size(1.0, &Figures::MEASURED, 1.5).is_err());
    }

    #[test]
    fn a_rate_out_of_bounds_is_told_both_bounds() {
        for rate in [0.0, 2e9] {
            let e = size(rate, &Figures::MEASURED, 0.5).unwrap_err().to_string();
            assert!(
                e.contains("give requests/s above 0, at most 1000000000"),
                "{e}"
            );
        }
    }

    #[test]
    fn changes_keep_what_they_do_not_name_and_are_checked() {
        let s = Spec::new("demo");
        let c = Changes {
            servers: Some(5),
            version: Some("v2".into()),
            ..Changes::default()
        };
        let t = s.clone().with(&c).unwrap();
        assert_eq!((t.servers, t.bots, t.version.as_str()), (5, 1, "v2"));
        let sized = s
            .clone()
            .with(&Changes {
                size_for: Some(1e6),
                bots: Some(1000),
                ..Changes::default()
            })
            .unwrap();
        assert_eq!((sized.servers, sized.bots, sized.rate), (32, 1000, 1000.0));
        assert_eq!(
            sized.aggregator_cpu_m, 500,
            "sizing never shrinks the aggregator"
        );
        for bad in [
            Changes {
                servers: Some(-1),
                ..Changes::default()
            },
            Changes {
                version: Some("v 2".into()),
                ..Changes::default()
            },
            Changes {
                pull_policy: Some("Sometimes".into()),
                ..Changes::default()
            },
        ] {
            assert!(matches!(s.clone().with(&bad), Err(Error::Usage(_))));
        }
        assert!(Spec::new("Bad_Run").check().is_err());
        assert!(p99_warning(1.0, &Figures::MEASURED).is_some());
        assert!(p99_warning(10.0, &Figures::MEASURED).is_none());
    }
}
