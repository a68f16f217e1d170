//! Per-worker measurement: plain counters and HDR histograms behind one `RefCell`, touched by
//! every lane of the worker's single thread. No locks, no allocation per request. Named
//! requests are counted again under their name by a recorder of their own (a name's own
//! sends, answers, failures, latency), taken every second with the rest as the snapshot's
//! names.

use hdrhistogram::Histogram;
use hist::{new_histogram, Snapshot};
use st_http::{ByteCounter, ErrorClass, VersionTag};
use std::time::Duration;

const STATUS_SLOTS: usize = 1000;

pub(crate) struct Recorder {
    responses: u64,
    status: Box<[u64; STATUS_SLOTS]>,
    errors: [u64; ErrorClass::ALL.len()],
    latency: Histogram<u64>,
    service: Histogram<u64>,
    late: u64,
    capped: u64,
    unsent: u64,
    lateness: Histogram<u64>,
    /// Answers per server version: a handful of versions at most, so a linear scan beats a map.
    versions: Vec<(VersionTag, u64)>,
    intended: u64,
    sent: u64,
    bytes: ByteCounter,
    /// Bytes (read, written) at the last `take`.
    bytes_taken: (u64, u64),
    interval_start: f64,
    /// Per name, the mix's names in order (empty: no request is named).
    names: Vec<(String, Recorder)>,
    /// Names go into every snapshot taken (else only into the last).
    names_each_second: bool,
}

fn micros(d: Duration) -> u64 {
    // HDR histograms cannot hold 0; a sub-microsecond latency is recorded as 1 µs.
    (d.as_micros() as u64).max(1)
}

impl Recorder {
    /// A recorder keeping `names` apart, in each snapshot or only in the last.
    pub(crate) fn new(bytes: ByteCounter, names: &[String], names_each_second: bool) -> Self {
        Recorder {
            responses: 0,
            status: Box::new([0; STATUS_SLOTS]),
            errors: [0; ErrorClass::ALL.len()],
            latency: new_histogram(),
            service: new_histogram(),
            late: 0,
            capped: 0,
            unsent: 0,
            lateness: new_histogram(),
            versions: Vec::new(),
            intended: 0,
            sent: 0,
            bytes,
            bytes_taken: (0, 0),
            interval_start: 0.0,
            names: names
                .iter()
                .map(|n| (n.clone(), Recorder::new(ByteCounter::default(), &[], false)))
                .collect(),
            names_each_second,
        }
    }

    /// Nothing was sent, answered or failed since the last take.
    fn idle(&self) -> bool {
        self.sent == 0 && self.responses == 0 && self.errors.iter().all(|n| *n == 0)
    }

    /// A complete response. `latency` is from the intended send, `service` from the actual one.
    pub(crate) fn response(
        &mut self,
        name: Option<usize>,
        status: u16,
        version: VersionTag,
        latency: Duration,
        service: Duration,
    ) {
        if let Some((_, r)) = name.and_then(|n| self.names.get_mut(n)) {
            r.response(None, status, version, latency, service);
        }
        self.responses += 1;
        if !version.is_empty() {
            match self.versions.iter_mut().find(|(v, _)| *v == version) {
                Some((_, n)) => *n += 1,
                None => self.versions.push((version, 1)),
            }
        }
        self.status[(status as usize).min(STATUS_SLOTS - 1)] += 1;
        let _ = self.latency.record(micros(latency));
        let _ = self.service.record(micros(service));
    }

    /// A request (counted under `name`) is being sent now.
    pub(crate) fn sent(&mut self, name: Option<usize>) {
        if let Some((_, r)) = name.and_then(|n| self.names.get_mut(n)) {
            r.sent(None);
        }
        self.sent += 1;
    }

    /// The schedule asked for a send (open loop; the closed loop has no schedule).
    pub(crate) fn intended(&mut self) {
        self.intended += 1;
    }

    /// A request (counted under `name`) failed.
    pub(crate) fn error(&mut self, name: Option<usize>, class: ErrorClass) {
        if let Some((_, r)) = name.and_then(|n| self.names.get_mut(n)) {
            r.error(None, class);
        }
        self.errors[class.index()] += 1;
    }

    /// An open-loop send started `by` after its intended time; `capped` if it had to wait for
    /// a free lane at the connection cap.
    pub(crate) fn send_delay(&mut self, by: Duration, capped: bool) {
        let us = micros(by);
        self.late += u64::from(us > hist::LATE_US);
        self.capped += u64::from(capped);
        let _ = self.lateness.record(us);
    }

    /// Open loop: `n` sends were due before the end but never started.
    pub(crate) fn unsent(&mut self, n: u64) {
        self.unsent += n;
    }

    /// The last snapshot of a run: as [`Recorder::take`], with the names.
    pub(crate) fn take_last(&mut self, end: f64) -> Snapshot {
        self.names_each_second = true;
        self.take(end)
    }

    /// Take what was recorded since the last call as a snapshot ending at `end` (seconds since
    /// the run started), and start a new interval.
    pub(crate) fn take(&mut self, end: f64) -> Snapshot {
        let bytes = (self.bytes.read.get(), self.bytes.written.get());
        let mut s = Snapshot {
            start: self.interval_start,
            end,
            responses: std::mem::take(&mut self.responses),
            bytes: bytes.0 - self.bytes_taken.0,
            bytes_sent: bytes.1 - self.bytes_taken.1,
            latency: std::mem::replace(&mut self.latency, new_histogram()),
            service: std::mem::replace(&mut self.service, new_histogram()),
            late: std::mem::take(&mut self.late),
            capped: std::mem::take(&mut self.capped),
            unsent: std::mem::take(&mut self.unsent),
            lateness: std::mem::replace(&mut self.lateness, new_histogram()),
            sent: std::mem::take(&mut self.sent),
            intended: std::mem::take(&mut self.intended),
            ..Default::default()
        };
        for (v, n) in &mut self.versions {
            if *n > 0 {
                *s.versions.entry(v.to_text()).or_default() += std::mem::take(n);
            }
        }
        self.bytes_taken = bytes;
        self.interval_start = end;
        for (code, n) in self.status.iter_mut().enumerate() {
            if *n > 0 {
                s.status.insert(code as u16, std::mem::take(n));
            }
        }
        for class in ErrorClass::ALL {
            let n = std::mem::take(&mut self.errors[class.index()]);
            if n > 0 {
                s.errors.insert(class.as_str().to_string(), n);
            }
        }
        for (name, r) in self.names.iter_mut().filter(|_| self.names_each_second) {
            if r.idle() {
                r.interval_start = end;
            } else {
                s.names.insert(name.clone(), r.take(end));
            }
        }
        s
    }
}
