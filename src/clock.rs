//! The one place roomcast reads the wall clock.
//!
//! Everything that needs "now" (the journal's event times, `--at`/`--until`, the inventory's
//! timestamps, a manifest's capture time, "today" for licences) takes a [`Clock`]; the CLI builds a
//! [`SystemClock`], tests a [`ManualClock`] they move by hand. `Instant` (durations, timeouts) is not
//! wall time and stays where it is used.

use crate::model::Date;
use roomcast_proto::time::Timestamp;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A source of wall-clock time.
pub trait Clock: Send + Sync {
    /// Now, seconds since the Unix epoch (UTC).
    fn now(&self) -> Timestamp;

    /// Returns once [`Clock::now`] is at or past `at` (`--at`).
    fn sleep_until(&self, at: Timestamp);

    /// Today's date, UTC.
    fn today(&self) -> Date {
        Date::of(self.now())
    }
}

/// The system's clock: the only `SystemTime::now()` of the library.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        )
    }

    fn sleep_until(&self, at: Timestamp) {
        loop {
            let left = at.0 - self.now().0;
            if left <= 0 {
                return;
            }
            // Short naps: a suspended laptop or a clock step does not oversleep by hours.
            std::thread::sleep(Duration::from_secs(1).min(Duration::from_secs(left as u64)));
        }
    }
}

/// A clock that moves only when told to (tests): `sleep_until` jumps to the time asked for.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock reading `at`.
    pub fn new(at: Timestamp) -> ManualClock {
        ManualClock {
            now: AtomicI64::new(at.0),
        }
    }

    /// Sets the time.
    pub fn set(&self, at: Timestamp) {
        self.now.store(at.0, Ordering::SeqCst);
    }

    /// Moves the time `secs` seconds on.
    pub fn advance(&self, secs: i64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, at: Timestamp) {
        self.now.fetch_max(at.0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp(86_400 * 20_000 + 5));
        assert_eq!(c.now(), Timestamp(86_400 * 20_000 + 5));
        c.advance(10);
        c.sleep_until(Timestamp(0));
        assert_eq!(c.now(), Timestamp(86_400 * 20_000 + 15));
        c.sleep_until(Timestamp(86_400 * 20_001));
        assert_eq!(c.today().to_string(), "2024-10-05");
    }

    #[test]
    fn the_system_clock_is_past_2024() {
        assert!(SystemClock.now().0 > 1_700_000_000);
    }
}
