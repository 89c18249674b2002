//! What a plugin says about a call besides its output — its error, a sink's
//! reasons, a validator's violations — as the host keeps it: bounded, so
//! that one plugin's answer cannot fill a dead letter, a trace, the log or
//! a store record (on the NATS store, a record larger than the server
//! takes in one message could not be kept at all). Long text keeps its
//! head and its tail (where a traceback ends with the error); violations
//! past [`VIOLATIONS`] are summed up in one, as severe as the worst of them.

use syncline_model::{PluginError, Severity, Violation};

/// Bytes kept of a message or reason.
pub const TEXT: usize = 16 * 1024;
/// Bytes kept of a code or a field path.
pub const WORD: usize = 256;
/// Bytes kept of one violation's text.
pub const VIOLATION_TEXT: usize = 1024;
/// Violations kept of one call (the last one sums up the rest).
pub const VIOLATIONS: usize = 100;

/// `s` if it has at most `max` bytes; else its head and tail (about
/// `max` bytes together) around a note of how much was left out.
pub fn text(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut head = max / 2;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - max / 2;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{} … [{} bytes left out] … {}", &s[..head], tail - head, &s[tail..])
}

/// A plugin's error as kept.
pub fn error(e: PluginError) -> PluginError {
    PluginError { code: text(e.code, WORD), message: text(e.message, TEXT), retryable: e.retryable }
}

/// A validator's violations as kept.
pub fn violations(mut found: Vec<Violation>) -> Vec<Violation> {
    let rest = if found.len() > VIOLATIONS { found.split_off(VIOLATIONS - 1) } else { Vec::new() };
    let mut kept: Vec<Violation> =
        found.into_iter().map(|v| Violation { field: text(v.field, WORD), code: text(v.code, WORD), severity: v.severity, text: text(v.text, VIOLATION_TEXT) }).collect();
    if let Some(worst) = rest.iter().map(|v| v.severity).max_by_key(|s| rank(*s)) {
        kept.push(Violation {
            field: String::new(),
            code: "more-violations".into(),
            severity: worst,
            text: format!("{} more violations were found and not kept (the first {} are)", rest.len(), VIOLATIONS - 1),
        });
    }
    kept
}

fn rank(s: Severity) -> u8 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Error => 2,
        Severity::Critical => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_keeps_its_head_and_tail_on_char_boundaries() {
        assert_eq!(text("short".into(), 10), "short");
        let long = format!("Traceback {} ValueError: twelve", "é".repeat(10_000));
        let kept = text(long.clone(), 100);
        assert!(kept.len() < 200, "{}", kept.len());
        assert!(kept.starts_with("Traceback ") && kept.ends_with("ValueError: twelve"), "{kept}");
        assert!(kept.contains("bytes left out"), "{kept}");
    }

    #[test]
    fn violations_past_the_limit_are_summed_up_as_severe_as_the_worst() {
        let v = |i: usize, severity| Violation { field: format!("body.lines[{i}]"), code: "bad".into(), severity, text: "x".repeat(5000) };
        let exactly: Vec<Violation> = (0..VIOLATIONS).map(|i| v(i, Severity::Warning)).collect();
        let kept = violations(exactly);
        assert_eq!(kept.len(), VIOLATIONS);
        assert_eq!(kept[VIOLATIONS - 1].field, format!("body.lines[{}]", VIOLATIONS - 1), "all of them kept when they fit");
        assert!(kept.iter().all(|k| k.text.len() < VIOLATION_TEXT + 100));

        let mut many: Vec<Violation> = (0..5000).map(|i| v(i, Severity::Warning)).collect();
        many[4000].severity = Severity::Error;
        let kept = violations(many);
        assert_eq!(kept.len(), VIOLATIONS);
        let last = &kept[VIOLATIONS - 1];
        assert_eq!((last.code.as_str(), last.severity), ("more-violations", Severity::Error), "a blocking violation left out still blocks");
        assert!(last.text.starts_with(&format!("{} more violations", 5000 - (VIOLATIONS - 1))), "{}", last.text);
    }

    #[test]
    fn an_error_keeps_its_retryability() {
        let e = error(PluginError { code: "c".repeat(1000), message: "m".repeat(100_000), retryable: true });
        assert!(e.retryable && e.code.len() < WORD + 100 && e.message.len() < TEXT + 100);
    }
}
