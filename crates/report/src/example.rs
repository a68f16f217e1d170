//! A synthetic aggregator run, made deterministically (no clock, no randomness): four bots,
//! open-loop load raised halfway, and a rolling update from server version v1 to v2 with a
//! short latency spike and some failures. Tests render it (feature `example` for other
//! crates' tests); nothing here is measured, and the shipped binary does not contain it.

use crate::runfile::{series_of, BotRecord, Event, Fleet, FleetSecond, RunFile, RunInfo, Summary};
use crate::RUNFILE_VERSION;
use hist::Snapshot;

/// Unix second the example starts at (2025-11-24 16:00:00 UTC).
pub const START: u64 = 1_764_000_000;

/// The example run, `seconds` long (at least 10).
pub fn rolling_update(seconds: u32) -> RunFile {
    let plan = Plan::new(seconds);
    let mut uniform = lcg();
    let intervals: Vec<Snapshot> = (0..plan.n).map(|i| plan.second(i, &mut uniform)).collect();
    let mut total = Snapshot::default();
    for s in &intervals {
        total.merge(s);
    }
    let fleet = Fleet {
        seconds: (0..plan.n)
            .map(|i| FleetSecond {
                t: START + i,
                offered: plan.offered(i),
                reported: if i == plan.roll_to + 1 { 3 } else { 4 },
                live: 4,
            })
            .collect(),
        events: plan.events(),
        bots: bots(&total, plan.n),
        ..Fleet::default()
    };
    RunFile {
        version: RUNFILE_VERSION,
        tool: "scaletest aggregate".into(),
        started_unix: START as f64,
        info: info(plan.n),
        elapsed_s: plan.n as f64,
        interrupted: false,
        peak_lanes: 120,
        in_flight_at_end: 0,
        series: series_of(&intervals),
        summary: Some(summary(&total, plan.n)),
        total,
        intervals,
        fleet: Some(fleet),
        verdicts: Vec::new(),
        stages: Vec::new(),
    }
}

/// The run's seconds: the rate is raised at `raise`, the rollout spans `roll_from..roll_to`.
struct Plan {
    n: u64,
    raise: u64,
    roll_from: u64,
    roll_to: u64,
}

/// A linear congruential generator: repeatable, good enough to spread latencies.
fn lcg() -> impl FnMut() -> f64 {
    let mut seed: u64 = 0x5eed;
    move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

impl Plan {
    fn new(seconds: u32) -> Plan {
        let n = u64::from(seconds.max(10));
        Plan {
            n,
            raise: n / 2,
            roll_from: n / 3,
            roll_to: 2 * n / 3,
        }
    }

    fn offered(&self, i: u64) -> f64 {
        if i < self.raise {
            2000.0
        } else {
            3000.0
        }
    }

    /// Second `i`: latencies, lateness, statuses, errors and versions.
    fn second(&self, i: u64, uniform: &mut impl FnMut() -> f64) -> Snapshot {
        let offered = self.offered(i);
        let mut s = Snapshot {
            start: i as f64,
            end: i as f64 + 1.0,
            intended: offered as u64,
            sent: offered as u64 - i % 3,
            ..Default::default()
        };
        // The seconds just after the rollout starts are slow: new pods warming up.
        let spike = (self.roll_from..self.roll_from + 4).contains(&i);
        let wait_ms = if spike { 20_000.0 } else { 0.0 };
        // 100 latency values per second, each standing for about 1/100 of the answers.
        let answers = s.sent - 2;
        for k in 0..100 {
            let service = 600.0 + 900.0 * -uniform().ln();
            let wait = wait_ms * uniform() + 50.0 * -uniform().ln();
            let weight = answers / 100 + u64::from(k < answers % 100);
            s.service.record_n(service as u64, weight).unwrap_or(());
            s.latency
                .record_n((service + wait) as u64, weight)
                .unwrap_or(());
        }
        s.responses = answers;
        // Sends start a few µs late; a few in each second by more than 1 ms.
        s.lateness.record_n(40, s.sent - 5).unwrap_or(());
        s.lateness.record_n(1500, 5).unwrap_or(());
        s.late = 5;
        let failed = if spike { 12 } else { i % 7 / 6 };
        s.status.insert(200, s.responses - failed);
        if failed > 0 {
            s.status.insert(503, failed);
        }
        if spike {
            s.errors.insert("reset".into(), 3);
        }
        s.bytes = s.responses * 130;
        // v2's share grows linearly over the rollout.
        let v2 = match i {
            i if i < self.roll_from => 0,
            i if i >= self.roll_to => s.responses,
            i => s.responses * (i - self.roll_from) / (self.roll_to - self.roll_from),
        };
        s.versions.insert("v1".into(), s.responses - v2);
        s.versions.insert("v2".into(), v2);
        s.versions.retain(|_, n| *n > 0);
        s
    }

    fn events(&self) -> Vec<Event> {
        let event = |i: u64, kind: &str, text: &str| Event {
            t: (START + i) as f64 + 0.25,
            kind: kind.into(),
            text: text.into(),
        };
        vec![
            event(self.roll_from, "posted", "rollout v1 → v2 started"),
            event(self.raise, "load", "rate 2000 → 3000 req/s"),
            event(self.roll_to + 1, "bot_stale", "bot-3 missed a report"),
        ]
    }
}

fn bots(total: &Snapshot, n: u64) -> Vec<BotRecord> {
    (0..4)
        .map(|b| BotRecord {
            id: b + 1,
            name: format!("bot-{b}"),
            host: format!("node-{b}"),
            pid: 1000 + b as u32,
            version: "0.1.0".into(),
            state: "live".into(),
            joined: START as f64,
            last_seen: (START + n) as f64,
            responses: total.responses / 4,
            errors: total.failed() / 4,
            rate: 750.0,
            skew_ms: b as f64 - 1.5,
            dropped: 0,
            ..Default::default()
        })
        .collect()
}

fn summary(total: &Snapshot, n: u64) -> Summary {
    Summary {
        requests: total.responses,
        errors: total.failed(),
        ok: total.ok(),
        live: 4,
        stale: 0,
        gone: 0,
        p50_ms: total.quantile_ms(0.5),
        p99_ms: total.quantile_ms(0.99),
        versions: total.versions.clone(),
        elapsed_s: n as f64,
        names: Vec::new(),
    }
}

fn info(n: u64) -> RunInfo {
    RunInfo {
        url: "http://app.example:8080/".into(),
        targets: 1,
        weights: None,
        mode: "open".into(),
        protocol: "HTTP/1.1".into(),
        connections: 40,
        streams: 1,
        max_connections: Some(400),
        rate: Some("2000, then 3000".into()),
        connection_stages: None,
        arrival: Some("uniform".into()),
        target_rate: Some(2500.0),
        threads: 8,
        duration_s: Some(n as f64),
        requests: None,
        timeout_s: 10.0,
    }
}
