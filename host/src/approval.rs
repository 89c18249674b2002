//! Plugin approvals (`[plugins] mode = "approved"`): reading a digest as
//! an operator writes it, and recording or withdrawing an approval
//! together with its audit event — the one way both the API and the
//! offline `syncline plugin approve --config` change the allow-list. The
//! check itself is where plugins are bound (`pipeline::Versions`).

use crate::store::records::{Approval, AuditEntry, AuditEvent};
use crate::store::{Store, StoreError};

/// `text` as a full digest `sha256:<64 hex>` (the prefix may be left out).
///
/// # Errors
///
/// What is wrong with it.
pub fn digest(text: &str) -> Result<String, String> {
    let hex = text.trim().strip_prefix("sha256:").unwrap_or(text.trim());
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
    } else {
        Err(format!("`{text}` is not a plugin digest: write sha256: and 64 hex digits, as `syncline inspect` prints"))
    }
}

/// Records `approval` and its audit event.
///
/// # Errors
///
/// [`StoreError`] (nothing was approved).
pub fn approve(store: &dyn Store, approval: &Approval) -> Result<(), StoreError> {
    store.approve_plugin(approval)?;
    let event = AuditEvent::PluginApproved { plugin: approval.plugin.clone(), digest: approval.digest.clone(), note: approval.note.clone() };
    store.audit(&AuditEntry { actor: approval.by.clone(), tenant: None, event })
}

/// Withdraws the approval of `plugin` at `digest` (audited); whether there
/// was one. A running version keeps running until it is replaced.
///
/// # Errors
///
/// [`StoreError`].
pub fn revoke(store: &dyn Store, actor: &str, plugin: &str, digest: &str) -> Result<bool, StoreError> {
    let had = store.revoke_plugin_approval(plugin, digest)?;
    if had {
        let event = AuditEvent::PluginApprovalRevoked { plugin: plugin.to_string(), digest: digest.to_string() };
        store.audit(&AuditEntry { actor: actor.to_string(), tenant: None, event })?;
    }
    Ok(had)
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_read_with_or_without_their_prefix() {
        let hex = "AB".repeat(32);
        assert_eq!(super::digest(&hex).unwrap(), format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(super::digest(&format!("sha256:{hex}")).unwrap(), format!("sha256:{}", "ab".repeat(32)));
        assert!(super::digest("sha256:abc").is_err() && super::digest(&"g".repeat(64)).is_err());
    }
}
