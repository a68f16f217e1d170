//! The run's events log: what happened (bots joining and leaving, load changes, restarts,
//! posted notes), the newest [`MAX_EVENTS`] kept, each handed to the live stream once.

use super::{Refused, State};
use report::Event;

/// Events kept in memory (and in the results); older ones are counted, not kept.
const MAX_EVENTS: usize = 20_000;

impl State {
    pub(super) fn event(&mut self, now: f64, kind: &str, text: String) {
        let e = Event {
            t: now,
            kind: kind.into(),
            text,
        };
        if self.events.len() >= MAX_EVENTS {
            self.events.remove(0);
            self.events_dropped += 1;
        }
        self.events.push(e.clone());
        self.new_events.push(e);
    }

    /// A threshold that can no longer pass ended the run (`--abort-on-fail`).
    pub fn threshold_failed(&mut self, now: f64, threshold: &str) {
        self.event(
            now,
            "threshold",
            format!("threshold {threshold} can no longer pass: the run ends"),
        );
    }

    /// Post an event from outside (`POST /api/events`).
    pub fn post_event(&mut self, now: f64, text: &str) -> Result<(), Refused> {
        let text = text.trim();
        if text.is_empty() || text.len() > 500 || text.contains('\n') {
            return Err(Refused(
                400,
                "an event is one line of 1 to 500 bytes".into(),
            ));
        }
        self.event(now, "posted", text.to_string());
        Ok(())
    }

    /// The events log.
    pub fn events(&self) -> &[Event] {
        &self.events
    }
}
