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
}
