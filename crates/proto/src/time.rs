//! Time as plain values: [`Timestamp`] (seconds since the Unix epoch, UTC) and the one proleptic
//! Gregorian calendar algorithm of the project (dates of licences, RFC 3339 and GLPI formats).
//!
//! Nothing here reads the clock: the tool's `clock` module does, once, and passes `now` in.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in time, in seconds since the Unix epoch, UTC. The engine never reads the clock: the caller
/// passes `now` with every event, and the journal stores it, so a replay sees the same times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

/// The civil date `(year, month 1..=12, day 1..=31)` `days` days after 1970-01-01 (negative: before).
/// Howard Hinnant's `civil_from_days`.
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to the civil date `(year, month, day)`; the inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Timestamp {
    /// Days since 1970-01-01 of this instant's UTC date.
    pub fn days_since_epoch(self) -> i64 {
        self.0.div_euclid(86_400)
    }

    /// Calendar fields (year, month, day, hour, minute, second), UTC.
    pub fn civil(self) -> (i64, u8, u8, u32, u32, u32) {
        let (year, month, day) = civil_from_days(self.days_since_epoch());
        let secs = self.0.rem_euclid(86_400) as u32;
        (year, month, day, secs / 3600, secs / 60 % 60, secs % 60)
    }

    /// `YYYY-MM-DD HH:MM:SS` (UTC): GLPI's datetime format and the inventory schema's `datetime`.
    pub fn to_glpi(self) -> String {
        let (y, mo, d, h, mi, s) = self.civil();
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
    }

    /// `YYYY-MM-DD-HH-MM-SS`, the suffix glpi-agent puts in a device id.
    pub fn to_device_suffix(self) -> String {
        let (y, mo, d, h, mi, s) = self.civil();
        format!("{y:04}-{mo:02}-{d:02}-{h:02}-{mi:02}-{s:02}")
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC): exports, manifests' capture time.
    pub fn to_rfc3339(self) -> String {
        let (y, mo, d, h, mi, s) = self.civil();
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_utc_calendar_dates() {
        assert_eq!(Timestamp(0).to_glpi(), "1970-01-01 00:00:00");
        // 2026-11-28 14:05:09 UTC
        assert_eq!(Timestamp(1_795_874_709).to_glpi(), "2026-11-28 14:05:09");
        assert_eq!(Timestamp(951_782_400).to_rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(
            Timestamp(1_795_000_000).to_rfc3339(),
            "2026-11-18T11:06:40Z"
        );
        assert_eq!(
            Timestamp(1_795_874_709).to_device_suffix(),
            "2026-11-28-14-05-09"
        );
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn days_round_trip() {
        for days in [-800_000, -1, 0, 1, 11_016, 20_785, 3_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
