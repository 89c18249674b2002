//! Records the server could not take whole: a trace event, an audit event
//! or a case record (dead letter, exception, loop) larger than the server's
//! `max_payload` would be refused, and the commit that keeps it retried
//! for ever. What plugins say is already bounded
//! ([`crate::runtime::clip`]), but the bounds add up (an error per
//! attempt, violations per stage); so a record still too large keeps its
//! shape with its long strings and lists cut, ever shorter, until it
//! fits. A case's message body is never cut (a replay needs it; the
//! pipeline dead-letters a message whose output would not fit instead).

use serde::Serialize;
use serde_json::Value;

/// Passes of cutting, until one fits: the longest string (bytes) and list
/// kept in each. Strings first: lists (a trace's outputs) are cut only if
/// that is not enough.
const PASSES: [(usize, usize); 4] = [(4096, usize::MAX), (4096, 50), (512, 10), (64, 3)];

/// `value` as JSON, in at most `limit` bytes if cutting its strings and
/// lists gets it there (the top-level fields named in `whole` are left as
/// they are); as it is when it fits already, or cannot be made to.
pub fn to_fit<T: Serialize>(value: &T, limit: usize, whole: &[&str]) -> Vec<u8> {
    let bytes = serde_json::to_vec(value).expect("a record serializes");
    if bytes.len() <= limit {
        return bytes;
    }
    let was = bytes.len();
    let mut json = serde_json::to_value(value).expect("a record serializes");
    let mut cut = bytes;
    for (text, list) in PASSES {
        match &mut json {
            Value::Object(fields) => {
                for (name, v) in fields.iter_mut() {
                    if !whole.contains(&name.as_str()) {
                        shorten(v, text, list);
                    }
                }
            }
            other => shorten(other, text, list),
        }
        cut = serde_json::to_vec(&json).expect("JSON serializes");
        if cut.len() <= limit {
            break;
        }
    }
    tracing::warn!(was, now = cut.len(), limit, "a record larger than the store takes in one message was cut to fit");
    cut
}

fn shorten(v: &mut Value, text: usize, list: usize) {
    match v {
        Value::String(s) if s.len() > text => *s = crate::runtime::clip::text(std::mem::take(s), text),
        Value::Array(items) => {
            items.truncate(list);
            items.iter_mut().for_each(|i| shorten(i, text, list));
        }
        Value::Object(fields) => fields.values_mut().for_each(|f| shorten(f, text, list)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_record_that_fits_is_left_alone_and_one_that_does_not_is_cut_but_its_body() {
        let small = json!({"record": {"reason": "short"}, "body": "b"});
        assert_eq!(to_fit(&small, 1000, &["body"]), serde_json::to_vec(&small).unwrap());

        let attempts: Vec<String> = (0..100).map(|i| format!("attempt {i}: {}", "e".repeat(16_000))).collect();
        let big = json!({"record": {"reason": "r".repeat(16_000), "attempts": attempts, "id": 7}, "body": "m".repeat(50_000)});
        let cut = to_fit(&big, 100_000, &["body"]);
        assert!(cut.len() <= 100_000, "{}", cut.len());
        let back: Value = serde_json::from_slice(&cut).unwrap();
        assert_eq!(back["body"], big["body"], "the body is whole");
        assert_eq!(back["record"]["id"], 7);
        assert!(back["record"]["reason"].as_str().unwrap().contains("bytes left out"));
        assert!(back["record"]["attempts"].as_array().unwrap().len() <= 50);

        // Cutting strings is enough here: the list keeps every item.
        let outputs: Vec<String> = (0..200).map(|i| format!("output-{i}")).collect();
        let wide = json!({"outputs": outputs, "error": "x".repeat(50_000)});
        let back: Value = serde_json::from_slice(&to_fit(&wide, 10_000, &[])).unwrap();
        assert_eq!(back["outputs"].as_array().unwrap().len(), 200);
    }
}
