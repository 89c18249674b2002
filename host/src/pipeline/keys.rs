//! The idempotency keys sinks receive. A key leaving the host is scoped by
//! tenant and pipeline and built so that no client-chosen key can equal
//! another message's key:
//!
//! ```text
//! TENANT/PIPELINE/k:ESCAPED-CLIENT-KEY[/N...]   the message came with a key
//! TENANT/PIPELINE/id:MESSAGE-ID[/N...]          it came without one
//! ```
//!
//! `/N` is appended per stage output (output `N` of its parent), so the
//! same business effect gets the same key however often it is processed.
//! In the client's key every byte other than ASCII letters, digits, `-`,
//! `.`, `_` and `~` is percent-escaped (`/` becomes `%2F`), so `/` only
//! ever separates parts the host added, and the key is a valid header value.
//! Tenant and pipeline ids are names (`[a-z0-9-]`), so two tenants or two
//! pipelines never share a key.

use std::fmt::Write;

/// The key of a message as accepted by `pipeline` of `tenant`: from the
/// client's (or source's) `key` when it has one, else from its `id`.
pub fn root(tenant: &str, pipeline: &str, key: Option<&str>, id: &str) -> String {
    match key.filter(|k| !k.is_empty()) {
        Some(k) => format!("{tenant}/{pipeline}/k:{}", escape(k)),
        None => format!("{tenant}/{pipeline}/id:{}", escape(id)),
    }
}

/// The key of output `n` of the message keyed `parent`.
pub fn child(parent: &str, n: usize) -> String {
    format!("{parent}/{n}")
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_never_equal_derived_ones_or_another_tenants() {
        let derived = child(&root("acme", "orders", Some("PO-30419"), "01A"), 0);
        let direct = root("acme", "orders", Some("PO-30419/0"), "01B");
        let other_tenant = root("globex", "orders", Some("PO-30419/0"), "01C");
        assert_eq!(derived, "acme/orders/k:PO-30419/0");
        assert_eq!(direct, "acme/orders/k:PO-30419%2F0");
        assert_eq!(other_tenant, "globex/orders/k:PO-30419%2F0");
        assert_ne!(derived, direct);
        // A client key that looks like a host id stays a client key.
        assert_ne!(root("acme", "orders", Some("id:01A"), "x"), root("acme", "orders", None, "01A"));
        assert_eq!(root("acme", "orders", Some("Ä b%"), "x"), "acme/orders/k:%C3%84%20b%25");
        assert_eq!(root("acme", "orders", Some(""), "01D"), "acme/orders/id:01D");
    }
}
