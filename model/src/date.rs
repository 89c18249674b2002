//! Calendar dates as the canonical records write them (`YYYY-MM-DD`), with
//! the day arithmetic plugins need (lead times, need-by dates). Proleptic
//! Gregorian; no time zones.

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    days: i64,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

// Days since 1970-01-01 (H. Hinnant's civil calendar algorithms).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + if m <= 2 { 1 } else { 0 }, m, d)
}

impl Date {
    /// Parses `YYYY-MM-DD`, checking that the day exists.
    ///
    /// # Errors
    ///
    /// A sentence saying what is wrong with `text`.
    pub fn parse(text: &str) -> Result<Date, String> {
        let bad = || format!("`{text}` is not a date of the form YYYY-MM-DD");
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
        let (y, m, d) = (num(&text[0..4])? as i64, num(&text[5..7])?, num(&text[8..10])?);
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return Err(format!("`{text}` is not a real calendar day"));
        }
        Ok(Date { days: days_from_civil(y, m, d) })
    }

    /// The date `n` days later (earlier when negative).
    pub fn add_days(self, n: i64) -> Date {
        Date { days: self.days + n }
    }

    /// Days from `other` to `self`.
    pub fn days_since(self, other: Date) -> i64 {
        self.days - other.days
    }
}

impl Date {
    /// Its year, month (1-12) and day (1-31).
    pub fn ymd(self) -> (i64, u32, u32) {
        civil_from_days(self.days)
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = civil_from_days(self.days);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// Checks an RFC 3339 timestamp's shape: a valid date, `T`, `hh:mm:ss`,
/// optional fraction, and `Z` or `±hh:mm`.
///
/// # Errors
///
/// A sentence saying what is wrong.
pub fn check_timestamp(text: &str) -> Result<(), String> {
    let bad = || format!("`{text}` is not an RFC 3339 timestamp (e.g. 2026-11-27T16:00:00Z)");
    if text.len() < 20 || !matches!(text.as_bytes()[10], b'T' | b't') {
        return Err(bad());
    }
    Date::parse(&text[..10]).map_err(|_| bad())?;
    let rest = &text[11..];
    let time_ok = |t: &str| {
        let p: Vec<_> = t.split(':').collect();
        p.len() == 3
            && p[0].len() == 2
            && p[1].len() == 2
            && p[0].parse::<u32>().is_ok_and(|h| h < 24)
            && p[1].parse::<u32>().is_ok_and(|m| m < 60)
            && p[2].split('.').next().is_some_and(|s| s.len() == 2 && s.parse::<u32>().is_ok_and(|s| s <= 60))
    };
    let (time, offset_ok) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, true)
    } else if rest.len() > 6 {
        let (t, off) = rest.split_at(rest.len() - 6);
        (t, off.starts_with(['+', '-']) && time_ok(&format!("{}:00", &off[1..])))
    } else {
        return Err(bad());
    };
    if time_ok(time) && offset_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_formats_and_adds() {
        let d = Date::parse("2024-02-28").unwrap();
        assert_eq!(d.add_days(1).to_string(), "2024-02-29");
        assert_eq!(d.add_days(2).to_string(), "2024-03-01");
        assert_eq!(Date::parse("2026-01-05").unwrap().add_days(-14).to_string(), "2025-12-22");
        assert!(Date::parse("2025-02-29").is_err());
        assert!(Date::parse("2025-13-01").is_err());
        assert!(Date::parse("25-1-1").is_err());
    }

    #[test]
    fn timestamps() {
        assert!(check_timestamp("2026-11-27T16:00:00Z").is_ok());
        assert!(check_timestamp("2026-11-27T16:00:00.123+01:00").is_ok());
        assert!(check_timestamp("2026-11-27 16:00").is_err());
        assert!(check_timestamp("2026-11-27T25:00:00Z").is_err());
    }
}
