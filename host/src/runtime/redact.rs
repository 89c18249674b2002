//! Keeps a plugin's secrets — the values of its `{ env = "VAR" }` config
//! entries — out of everything that leaves one of its calls: its log lines,
//! its error texts and output tail, and what it returns (messages,
//! violations, delivery outcomes, a source's cursor). Each occurrence is
//! replaced by `[redacted]`, so a plugin that echoes its credentials (an
//! HTTP error with the request headers, a debug line) leaks them into no
//! log, trace, dead letter or API answer. Plugins without secrets pay
//! nothing.

use std::borrow::Cow;

use syncline_model::{json as mjson, DeliveryOutcome, Message, PluginError, PollBatch, Violation};

use super::error::{CallError, Failure};

/// What a secret is replaced by.
pub const REDACTED: &str = "[redacted]";

/// Shorter values are not treated as secrets: replacing every `1234` or
/// `on` in a plugin's output would garble its messages (a quantity that
/// happens to equal it) and hide nothing worth hiding; credentials are
/// longer.
const MIN_LEN: usize = 8;

/// A plugin's secret values.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// The secrets among `values` (longest first, so a secret that contains
    /// another is replaced whole).
    pub fn new(values: impl IntoIterator<Item = String>) -> Secrets {
        let mut v: Vec<String> = values.into_iter().filter(|s| s.len() >= MIN_LEN).collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        v.dedup();
        Secrets(v)
    }

    /// Whether there are none (nothing to do).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every secret replaced.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        out
    }

    fn string(&self, s: &mut String) {
        if let Cow::Owned(clean) = self.text(s) {
            *s = clean;
        }
    }

    /// A message with every secret replaced, wherever it is: through its
    /// JSON form, only when a secret occurs in it.
    pub fn message(&self, msg: Message) -> Message {
        let text = mjson::to_string(&msg);
        match self.text(&text) {
            Cow::Borrowed(_) => msg,
            // A secret replaced inside a string keeps the JSON valid; if the
            // message no longer reads (a secret that was a number), it is
            // kept with its body as text rather than with the secret.
            Cow::Owned(clean) => mjson::from_str(&clean).unwrap_or_else(|_| {
                let mut m = msg;
                m.body = syncline_model::Body::Raw(syncline_model::Raw { content_type: "text/plain".into(), data: clean.into_bytes() });
                m
            }),
        }
    }

    fn plugin_error(&self, e: &mut PluginError) {
        self.string(&mut e.code);
        self.string(&mut e.message);
    }

    /// A violation with secrets replaced in its texts.
    pub fn violation(&self, mut v: Violation) -> Violation {
        self.string(&mut v.text);
        self.string(&mut v.field);
        v
    }

    /// A delivery outcome with secrets replaced in its reference or reason.
    pub fn outcome(&self, mut o: DeliveryOutcome) -> DeliveryOutcome {
        match &mut o {
            DeliveryOutcome::Delivered { reference: t } | DeliveryOutcome::Retryable { reason: t, .. } | DeliveryOutcome::Permanent { reason: t } => self.string(t),
        }
        o
    }

    /// A poll's messages and cursor with secrets replaced.
    pub fn batch(&self, mut b: PollBatch) -> PollBatch {
        b.messages = b.messages.into_iter().map(|m| self.message(m)).collect();
        if let Some(c) = &mut b.cursor {
            self.string(c);
        }
        b
    }

    /// A failed call with secrets replaced in its cause and output tail.
    pub fn error(&self, mut e: CallError) -> CallError {
        match &mut e.failure {
            Failure::Plugin(p) => self.plugin_error(p),
            Failure::Trap(t) | Failure::Contract(t) | Failure::Instantiate(t) => self.string(t),
            Failure::Timeout(_) | Failure::MemoryLimit { .. } | Failure::OutputLimit { .. } => {}
        }
        if let Some(o) = &mut e.output {
            self.string(o);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_goes_and_short_values_stay() {
        let s = Secrets::new(["s3cr3t-token".to_string(), "s3cr3t-x".to_string(), "on".to_string(), "1234".to_string()]);
        assert_eq!(s.text("auth s3cr3t-token, again s3cr3t-x, on, 1234"), "auth [redacted], again [redacted], on, 1234");
        assert!(matches!(s.text("nothing here"), Cow::Borrowed(_)));
        assert!(Secrets::new(["1234567".to_string()]).is_empty());
    }

    #[test]
    fn a_message_keeps_its_shape_without_the_secret() {
        let s = Secrets::new(["hunter2-key".to_string()]);
        let mut m = Message::new(syncline_model::Body::Raw(syncline_model::Raw { content_type: "text/plain".into(), data: b"x".to_vec() }));
        m.headers.push(syncline_model::Header { key: "authorization".into(), value: "Bearer hunter2-key".into() });
        let clean = s.message(m);
        assert_eq!(clean.headers[0].value, "Bearer [redacted]");
    }
}
