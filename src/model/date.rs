//! Calendar dates `YYYY-MM-DD` (licence expiry, qualification). No clock here: "today" is always
//! an argument, so checks are reproducible (`--today`).

use std::fmt;
use std::str::FromStr;

/// A proleptic Gregorian date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

/// Why a string is not a `YYYY-MM-DD` date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a date YYYY-MM-DD")]
pub struct DateError(pub String);

impl Date {
    /// The year (proleptic Gregorian).
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month, 1 to 12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, 1 to 31.
    pub fn day(self) -> u8 {
        self.day
    }

    /// The date `days` days after 1970-01-01 (negative: before).
    pub fn from_days_since_epoch(days: i64) -> Date {
        let (year, month, day) = roomcast_proto::time::civil_from_days(days);
        Date {
            year: year as i32,
            month,
            day,
        }
    }

    /// Days since 1970-01-01.
    pub fn days_since_epoch(self) -> i64 {
        roomcast_proto::time::days_from_civil(i64::from(self.year), self.month, self.day)
    }

    /// The UTC date of `t`.
    pub fn of(t: roomcast_proto::time::Timestamp) -> Date {
        Date::from_days_since_epoch(t.days_since_epoch())
    }

    /// The date `n` days later.
    pub fn plus_days(self, n: i64) -> Date {
        Date::from_days_since_epoch(self.days_since_epoch() + n)
    }
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl FromStr for Date {
    type Err = DateError;

    fn from_str(s: &str) -> Result<Date, DateError> {
        let err = || DateError(s.to_string());
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u32, DateError> {
            let part = &s[r];
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().map_err(|_| err())
            } else {
                Err(err())
            }
        };
        let year = num(0..4)? as i32;
        let month = num(5..7)? as u8;
        let day = num(8..10)? as u8;
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(err());
        }
        Ok(Date { year, month, day })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_days() {
        for s in ["1970-01-01", "2000-02-29", "2026-08-31", "2024-12-31"] {
            let d: Date = s.parse().unwrap();
            assert_eq!(Date::from_days_since_epoch(d.days_since_epoch()), d);
            assert_eq!(d.to_string(), s);
        }
        assert_eq!("1970-01-02".parse::<Date>().unwrap().days_since_epoch(), 1);
    }

    #[test]
    fn refuses_impossible_dates() {
        for s in [
            "2025-02-29",
            "2025-13-01",
            "2025-1-01",
            "25-01-01",
            "2025-04-31",
            "abcd-01-01",
        ] {
            assert!(s.parse::<Date>().is_err(), "{s}");
        }
    }
}
