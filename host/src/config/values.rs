//! Small config value types that check themselves while parsing, so a bad
//! value fails at its exact line with a message saying what was expected.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// A name: lower-case letters, digits and `-`, starting with a letter.
/// Example: `forecast-release`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Name(String);

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;

    fn try_from(s: String) -> Result<Name, String> {
        if s.is_empty() {
            return Err("a name must not be empty".into());
        }
        if s.contains('_') {
            return Err(format!("`{s}` is not a valid name: words must be separated with '-', not '_'"));
        }
        let ok = s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.ends_with('-')
            && !s.contains("--");
        if !ok {
            return Err(format!(
                "`{s}` is not a valid name: use lower-case letters, digits and single '-' between words, starting with a letter (e.g. `forecast-release`)"
            ));
        }
        Ok(Name(s))
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A duration written with a unit: `250ms`, `2s`, `15m`, `1h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Span(pub Duration);

impl TryFrom<String> for Span {
    type Error = String;

    fn try_from(s: String) -> Result<Span, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || format!("`{s}` is not a duration: write a number and a unit, e.g. `250ms`, `2s`, `15m`, `1h`, `7d`");
        let n: f64 = num.parse().map_err(|_| bad())?;
        let secs = match unit.trim() {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            _ => return Err(bad()),
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(bad());
        }
        Ok(Span(Duration::from_secs_f64(secs)))
    }
}

/// How long a delivered order may wait for its execution status: a fixed
/// duration, or `lead-time` — the order's own (need-by minus order-by for a
/// requisition, minus ship-by for a transfer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StatusWindow {
    /// The same for every order.
    Fixed(Duration),
    /// Each order's lead time.
    LeadTime,
}

impl TryFrom<String> for StatusWindow {
    type Error = String;

    fn try_from(s: String) -> Result<StatusWindow, String> {
        if s.trim() == "lead-time" {
            return Ok(StatusWindow::LeadTime);
        }
        Span::try_from(s.clone()).map(|d| StatusWindow::Fixed(d.0)).map_err(|_| format!("`{s}` is neither `lead-time` nor a duration (`2h`, `3d`)"))
    }
}

/// A size in bytes: `512KiB`, `1MiB`, `2GiB`, `64MB`, or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SizeText")]
pub struct Size(pub usize);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeText {
    Bytes(u64),
    Text(String),
}

impl TryFrom<SizeText> for Size {
    type Error = String;

    fn try_from(v: SizeText) -> Result<Size, String> {
        let s = match v {
            SizeText::Bytes(n) => return Ok(Size(n as usize)),
            SizeText::Text(s) => s,
        };
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || format!("`{s}` is not a size: write e.g. `512KiB`, `1MiB`, `64MB` or a number of bytes");
        let n: usize = num.parse().map_err(|_| bad())?;
        let mult = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(Size).ok_or_else(bad)
    }
}

/// A span of time each week or each day, in UTC, when a sink holds its
/// queue: `Sun 02:00-04:00 UTC`, `daily 23:30-00:15 UTC` (an end before the
/// start runs into the next day).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Window {
    /// Day (0 = Monday), or every day.
    day: Option<u32>,
    /// Minutes after midnight.
    start: u32,
    /// Length in minutes (1..=1440).
    minutes: u32,
    text: String,
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl TryFrom<String> for Window {
    type Error = String;

    fn try_from(s: String) -> Result<Window, String> {
        let bad = |why: &str| format!("`{s}` is not a maintenance window ({why}): write e.g. `Sun 02:00-04:00 UTC` or `daily 23:30-00:15 UTC`");
        let parts: Vec<&str> = s.split_whitespace().collect();
        let (day, span, zone) = match parts[..] {
            [day, span, zone] => (day, span, zone),
            [_, _] => return Err(bad("times are in UTC; write `UTC` last")),
            _ => return Err(bad("three words: day, times, UTC")),
        };
        if zone != "UTC" {
            return Err(bad("times are in UTC; write `UTC` last"));
        }
        let day = match day {
            "daily" => None,
            d => Some(DAYS.iter().position(|x| x.eq_ignore_ascii_case(d)).ok_or_else(|| bad("the day is Mon..Sun or `daily`"))? as u32),
        };
        let minute = |t: &str| -> Option<u32> {
            let (h, m) = t.split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && t.len() == 5).then_some(h * 60 + m)
        };
        let (a, b) = span.split_once('-').ok_or_else(|| bad("times are `HH:MM-HH:MM`"))?;
        let (start, end) = (minute(a).ok_or_else(|| bad("times are `HH:MM-HH:MM`"))?, minute(b).ok_or_else(|| bad("times are `HH:MM-HH:MM`"))?);
        let minutes = if end > start { end - start } else { end + 1440 - start };
        Ok(Window { day, start, minutes, text: s })
    }
}

impl Window {
    /// Whether `now_ms` (ms since the epoch) falls in it.
    pub fn contains(&self, now_ms: i64) -> bool {
        let minute_of_day = now_ms.div_euclid(60_000).rem_euclid(1440) as u32;
        // 1970-01-01 was a Thursday (3, counting Monday as 0).
        let weekday = (now_ms.div_euclid(86_400_000) + 3).rem_euclid(7) as u32;
        // The window may have started today or the day before.
        [(weekday, minute_of_day), ((weekday + 6) % 7, minute_of_day + 1440)]
            .into_iter()
            .any(|(day, minute)| self.day.is_none_or(|d| d == day) && minute >= self.start && minute < self.start + self.minutes)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Name::try_from("forecast-release".to_string()).is_ok());
        assert!(Name::try_from("forecast_release".to_string()).unwrap_err().contains("not '_'"));
        assert!(Name::try_from("Forecast".to_string()).is_err());
        assert!(Name::try_from("a--b".to_string()).is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(Span::try_from("250ms".to_string()).unwrap().0, Duration::from_millis(250));
        assert_eq!(Span::try_from("15m".to_string()).unwrap().0, Duration::from_secs(900));
        assert!(Span::try_from("15 minutes".to_string()).is_err());
        assert_eq!(Size::try_from(SizeText::Text("1MiB".into())).unwrap().0, 1 << 20);
        assert!(Size::try_from(SizeText::Text("1 lots".into())).is_err());
    }

    #[test]
    fn maintenance_windows() {
        let w = |s: &str| Window::try_from(s.to_string());
        let at = |day: i64, h: i64, m: i64| ((4 + day) * 86_400 + h * 3600 + m * 60) * 1000; // day 0 = Monday 1970-01-05
        let sunday = w("Sun 02:00-04:00 UTC").unwrap();
        assert!(sunday.contains(at(6, 2, 0)) && sunday.contains(at(6, 3, 59)));
        assert!(!sunday.contains(at(6, 4, 0)) && !sunday.contains(at(6, 1, 59)) && !sunday.contains(at(5, 3, 0)));
        let late = w("daily 23:30-00:15 UTC").unwrap();
        assert!(late.contains(at(2, 23, 45)) && late.contains(at(3, 0, 10)) && !late.contains(at(3, 0, 15)) && !late.contains(at(3, 12, 0)));
        let over_midnight = w("sun 23:00-01:00 UTC").unwrap();
        assert!(over_midnight.contains(at(0, 0, 30)), "Monday 00:30 is in Sunday's window");
        assert!(!over_midnight.contains(at(6, 0, 30)), "Sunday 00:30 is not");
        assert!(w("Sun 02:00-04:00").unwrap_err().contains("write `UTC` last"));
        assert!(w("Sunday 02:00-04:00 UTC").unwrap_err().contains("Mon..Sun"));
        assert!(w("Sun 2:00-04:00 UTC").unwrap_err().contains("HH:MM-HH:MM"));
        assert!(w("Sun 02:00-24:00 UTC").is_err());
    }
}
