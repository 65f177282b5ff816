//! The bounded-frequency sync schedule: coalesce bursts, keep minSyncPeriod between syncs, resync every syncPeriod.
//!
//! A pure state machine over caller-supplied instants (upstream's
//! BoundedFrequencyRunner), so it is tested without a runtime or sleeps.

use std::time::{Duration, Instant};

/// When the next sync is due and whether it must be a full one.
#[derive(Debug, Clone)]
pub struct Schedule {
    min: Duration,
    max: Duration,
    last: Option<Instant>,
    requested: bool,
    force_full: bool,
}

impl Schedule {
    pub fn new(min: Duration, max: Duration) -> Schedule {
        Schedule {
            min,
            max,
            last: None,
            requested: false,
            force_full: true,
        }
    }

    /// Something changed: sync soon (but not before `min` after the last one).
    pub fn request(&mut self) {
        self.requested = true;
    }

    /// The instant the next sync is due.
    pub fn next(&self, now: Instant) -> Instant {
        match self.last {
            None => now,
            Some(last) if self.requested || self.force_full => last + self.min,
            Some(last) => last + self.max,
        }
    }

    /// If a sync is due at `now`, returns whether it must be full.
    pub fn due(&self, now: Instant) -> Option<bool> {
        if now < self.next(now) {
            return None;
        }
        let periodic = self.last.is_some_and(|l| now >= l + self.max);
        Some(self.force_full || periodic)
    }

    /// Records a sync attempt; a failed one is retried as a full sync after `min`.
    pub fn ran(&mut self, now: Instant, ok: bool) {
        self.last = Some(now);
        self.requested = false;
        self.force_full = !ok;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_frequency() {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut sch = Schedule::new(Duration::from_secs(1), Duration::from_secs(30));
        // (step, at ms, action, expected due)
        assert_eq!(
            sch.due(s(0)),
            Some(true),
            "first sync is full and immediate"
        );
        sch.ran(s(0), true);
        assert_eq!(sch.due(s(10)), None, "nothing requested");
        sch.request();
        sch.request();
        assert_eq!(sch.due(s(500)), None, "min interval holds a burst back");
        assert_eq!(sch.next(s(500)), s(1000));
        assert_eq!(
            sch.due(s(1000)),
            Some(false),
            "burst coalesced into one partial sync"
        );
        sch.ran(s(1000), true);
        assert_eq!(sch.due(s(2000)), None);
        assert_eq!(sch.next(s(2000)), s(31000), "periodic resync");
        assert_eq!(sch.due(s(31000)), Some(true), "periodic resync is full");
        sch.ran(s(31000), false);
        assert_eq!(sch.due(s(31500)), None, "retry waits min");
        assert_eq!(sch.due(s(32000)), Some(true), "retry after failure is full");
        sch.ran(s(32000), true);
        sch.request();
        assert_eq!(
            sch.due(s(40000)),
            Some(false),
            "a request long after the last sync runs at once"
        );
    }
}
