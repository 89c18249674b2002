//! Human-readable summaries of API answers for the CLI (`syncline trace`).

use serde_json::Value;

fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

/// A message trace (the answer of `GET /v1/messages/{id}`) as text.
pub fn trace_summary(t: &Value) -> String {
    let mut out = String::new();
    let id = t["id"].as_str().unwrap_or("?");
    if let Some(input) = t.get("input").filter(|v| !v.is_null()) {
        let kind = input["message"]["kind"].as_str().unwrap_or("?");
        out += &format!(
            "message {id} ({kind}) in {}/{}: {}\n",
            input["tenant"].as_str().unwrap_or("?"),
            input["pipeline"].as_str().unwrap_or("?"),
            input["state"].as_str().unwrap_or("?")
        );
        for step in input["processing"]["steps"].as_array().into_iter().flatten() {
            if let Some(to) = step.get("to") {
                let sinks: Vec<&str> = to.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                out += &format!("  route   {} -> {}\n", step["route"].as_str().unwrap_or("?"), sinks.join(", "));
                continue;
            }
            let outcome = &step["outcome"];
            let what = if let Some(e) = outcome.get("error") {
                format!("error: {}", e.as_str().unwrap_or("?"))
            } else if let Some(o) = outcome.get("outputs") {
                format!("{} output(s)", o.as_array().map_or(0, Vec::len))
            } else if outcome.get("valid") == Some(&Value::Bool(false)) {
                format!("invalid ({} violation(s))", outcome["violations"].as_array().map_or(0, Vec::len))
            } else {
                "valid".to_string()
            };
            let dropped = step["logs-dropped"].as_u64().map(|n| format!(" ({n} log lines dropped)")).unwrap_or_default();
            out += &format!(
                "  stage {} {}@{} {:.2} ms: {what}{dropped}\n",
                step["stage"],
                step["plugin"].as_str().unwrap_or("?"),
                short(step["digest"].as_str().unwrap_or("")),
                step["micros"].as_f64().unwrap_or(0.0) / 1000.0
            );
        }
    }
    for (label, list) in [("output", &t["outputs"]), ("delivery", &t["deliveries"])] {
        for d in list.as_array().into_iter().flatten() {
            let body = &d["message"]["body"];
            let what = body["id"].as_str().map(|s| format!(" {s}")).unwrap_or_default();
            out += &format!(
                "  {label} {} {}{what} -> sink {}: {}{} after {} attempt(s)\n",
                d["id"].as_str().unwrap_or("?"),
                d["message"]["kind"].as_str().unwrap_or("?"),
                d["sink"].as_str().unwrap_or("?"),
                d["state"].as_str().unwrap_or("?"),
                d["reference"].as_str().map(|r| format!(" ({r})")).unwrap_or_default(),
                d["attempts"].as_array().map_or(0, Vec::len)
            );
        }
    }
    for e in t["exceptions"].as_array().into_iter().flatten() {
        let detail = &e["detail"];
        let text = match detail["violations"].as_array() {
            Some(vs) => vs.iter().map(|v| format!("{}: {}", v["field"].as_str().unwrap_or("?"), v["text"].as_str().unwrap_or("?"))).collect::<Vec<_>>().join("; "),
            None => detail["text"].as_str().unwrap_or("").to_string(),
        };
        out += &format!("  exception {} -> queue {}: {text}\n", e["message-id"].as_str().unwrap_or("?"), e["queue"].as_str().unwrap_or("?"));
    }
    for d in t["dead-letters"].as_array().into_iter().flatten() {
        let unknown = if d["outcome"] == "unknown" { " [outcome unknown: it may have been delivered]" } else { "" };
        out += &format!(
            "  dead letter {} at {}{unknown}: {}\n",
            d["message-id"].as_str().unwrap_or("?"),
            d["place"].as_str().unwrap_or("?"),
            d["reason"].as_str().unwrap_or("?")
        );
    }
    out
}
