//! Plugin state as a call sees it: a per-tenant key-value store behind
//! [`StateStore`], and the writes of one call ([`CallWrites`]) kept apart
//! until the call returns. A call reads its own writes; they take effect
//! together when the call returns (with a result or an error it chose) and
//! are dropped when it traps or runs out of time or memory. So a plugin
//! that calls `set` in a loop costs one write per key at the end of the
//! call, not one per call of `set`, and a call that dies leaves no half
//! of its writes behind.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Distinct keys one call may write (set or delete).
pub const KEYS_PER_CALL: usize = 10_000;

/// One call's writes, in key order: `None` removes the key.
pub type Writes = Vec<(String, Option<Vec<u8>>)>;

/// A plugin's per-tenant key-value state, kept across calls.
pub trait StateStore: Send + Sync {
    /// The value under (`tenant`, `plugin`, `key`).
    fn get(&self, tenant: &str, plugin: &str, key: &str) -> Option<Vec<u8>>;
    /// Bytes (keys and values) the tenant holds for the plugin.
    fn used(&self, tenant: &str, plugin: &str) -> usize;
    /// Bytes a tenant may hold per plugin.
    fn quota(&self) -> usize;
    /// Applies one call's writes at once.
    ///
    /// # Errors
    ///
    /// Text for the plugin when they would exceed the tenant's quota;
    /// nothing is applied then.
    fn commit(&self, tenant: &str, plugin: &str, writes: Writes) -> Result<(), String>;
}

/// The entries of one tenant and plugin, with the bytes they hold.
#[derive(Default)]
struct Entries {
    map: BTreeMap<String, Vec<u8>>,
    used: usize,
}

/// State held in memory, with a byte quota per tenant and plugin.
pub struct MemoryState {
    map: Mutex<BTreeMap<(String, String), Entries>>,
    quota: usize,
}

impl MemoryState {
    /// An empty state store whose tenants may each hold `quota` bytes per plugin.
    pub fn with_quota(quota: usize) -> MemoryState {
        MemoryState { map: Mutex::default(), quota }
    }
}

impl Default for MemoryState {
    fn default() -> MemoryState {
        MemoryState::with_quota(1 << 20)
    }
}

fn quota_error(quota: usize, tenant: &str) -> String {
    format!("state quota of {quota} bytes for tenant `{tenant}` would be exceeded")
}

impl StateStore for MemoryState {
    fn get(&self, tenant: &str, plugin: &str, key: &str) -> Option<Vec<u8>> {
        let map = self.map.lock().unwrap();
        map.get(&(tenant.to_string(), plugin.to_string()))?.map.get(key).cloned()
    }

    fn used(&self, tenant: &str, plugin: &str) -> usize {
        self.map.lock().unwrap().get(&(tenant.to_string(), plugin.to_string())).map_or(0, |e| e.used)
    }

    fn quota(&self) -> usize {
        self.quota
    }

    fn commit(&self, tenant: &str, plugin: &str, writes: Writes) -> Result<(), String> {
        let mut map = self.map.lock().unwrap();
        let entries = map.entry((tenant.to_string(), plugin.to_string())).or_default();
        let size = |k: &str, v: Option<&Vec<u8>>| v.map_or(0, |v| k.len() + v.len());
        let after = writes.iter().fold(entries.used, |used, (k, v)| used - size(k, entries.map.get(k)) + size(k, v.as_ref()));
        if after > self.quota {
            return Err(quota_error(self.quota, tenant));
        }
        for (key, value) in writes {
            match value {
                Some(v) => entries.map.insert(key, v),
                None => entries.map.remove(&key),
            };
        }
        entries.used = after;
        Ok(())
    }
}

/// The writes of the call under way, read back by the call itself.
#[derive(Debug, Default)]
pub struct CallWrites {
    pending: BTreeMap<String, Option<Vec<u8>>>,
    /// Bytes the pending writes add to (or, negative, free from) the state.
    delta: isize,
}

impl CallWrites {
    /// The value `key` has for this call: its own write, else the store's.
    pub fn get(&self, base: &dyn StateStore, tenant: &str, plugin: &str, key: &str) -> Option<Vec<u8>> {
        match self.pending.get(key) {
            Some(v) => v.clone(),
            None => base.get(tenant, plugin, key),
        }
    }

    /// Sets `key` for the rest of the call and, when it returns, for good.
    ///
    /// # Errors
    ///
    /// Text for the plugin when the tenant's quota would be exceeded or the
    /// call has written [`KEYS_PER_CALL`] other keys.
    pub fn set(&mut self, base: &dyn StateStore, tenant: &str, plugin: &str, key: &str, value: Vec<u8>) -> Result<(), String> {
        let new = (key.len() + value.len()) as isize;
        let delta = self.delta - self.current_size(base, tenant, plugin, key) + new;
        if base.used(tenant, plugin) as isize + delta > base.quota() as isize {
            return Err(quota_error(base.quota(), tenant));
        }
        if !self.pending.contains_key(key) && self.pending.len() >= KEYS_PER_CALL {
            return Err(format!("a call may write at most {KEYS_PER_CALL} distinct state keys"));
        }
        self.pending.insert(key.to_string(), Some(value));
        self.delta = delta;
        Ok(())
    }

    /// Removes `key`. Removing a key that does not exist records nothing.
    pub fn delete(&mut self, base: &dyn StateStore, tenant: &str, plugin: &str, key: &str) {
        let size = self.current_size(base, tenant, plugin, key);
        let exists_in_store = || base.get(tenant, plugin, key).is_some();
        match self.pending.get_mut(key) {
            Some(slot) if exists_in_store() => *slot = None,
            Some(_) => {
                self.pending.remove(key);
            }
            None if exists_in_store() => {
                self.pending.insert(key.to_string(), None);
            }
            None => return,
        }
        self.delta -= size;
    }

    /// What `key` holds for this call, in quota bytes.
    fn current_size(&self, base: &dyn StateStore, tenant: &str, plugin: &str, key: &str) -> isize {
        let value_len = match self.pending.get(key) {
            Some(v) => v.as_ref().map(Vec::len),
            None => base.get(tenant, plugin, key).map(|v| v.len()),
        };
        value_len.map_or(0, |n| (key.len() + n) as isize)
    }

    /// The writes made so far, leaving none.
    pub fn take(&mut self) -> Writes {
        self.delta = 0;
        std::mem::take(&mut self.pending).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(state: &MemoryState, writes: &mut CallWrites) -> Result<(), String> {
        state.commit("acme", "p", writes.take())
    }

    #[test]
    fn a_call_reads_its_own_writes_and_they_apply_at_commit() {
        let state = MemoryState::with_quota(100);
        let mut call = CallWrites::default();
        call.set(&state, "acme", "p", "n", b"1".to_vec()).unwrap();
        call.set(&state, "acme", "p", "n", b"22".to_vec()).unwrap();
        assert_eq!(call.get(&state, "acme", "p", "n"), Some(b"22".to_vec()));
        assert_eq!(state.get("acme", "p", "n"), None, "nothing is applied before the call returns");
        let writes = call.take();
        assert_eq!(writes, vec![("n".to_string(), Some(b"22".to_vec()))], "many sets of a key are one write");
        state.commit("acme", "p", writes).unwrap();
        assert_eq!((state.get("acme", "p", "n"), state.used("acme", "p")), (Some(b"22".to_vec()), 3));
    }

    #[test]
    fn dropped_writes_leave_the_state_as_it_was() {
        let state = MemoryState::with_quota(100);
        state.commit("acme", "p", vec![("n".into(), Some(b"1".to_vec()))]).unwrap();
        let mut call = CallWrites::default();
        call.set(&state, "acme", "p", "n", b"2".to_vec()).unwrap();
        call.delete(&state, "acme", "p", "n");
        assert_eq!(call.get(&state, "acme", "p", "n"), None);
        call.take(); // the call trapped
        assert_eq!(state.get("acme", "p", "n"), Some(b"1".to_vec()));
    }

    #[test]
    fn the_quota_counts_the_calls_writes_and_what_they_replace() {
        let state = MemoryState::with_quota(10);
        let mut call = CallWrites::default();
        call.set(&state, "acme", "p", "k", vec![0; 9]).unwrap();
        call.set(&state, "acme", "p", "k", vec![0; 9]).unwrap(); // replaces itself
        let err = call.set(&state, "acme", "p", "j", vec![]).unwrap_err();
        assert!(err.contains("quota of 10 bytes for tenant `acme`"), "{err}");
        call.delete(&state, "acme", "p", "k");
        call.set(&state, "acme", "p", "j", vec![0; 9]).unwrap();
        committed(&state, &mut call).unwrap();
        assert_eq!(state.used("acme", "p"), 10);
        // Another tenant has its own quota.
        call.set(&state, "other", "p", "k", vec![0; 9]).unwrap();
        state.commit("other", "p", call.take()).unwrap();
    }

    #[test]
    fn a_commit_over_the_quota_applies_nothing() {
        let state = MemoryState::with_quota(10);
        let mut first = CallWrites::default();
        let mut second = CallWrites::default();
        first.set(&state, "acme", "p", "a", vec![0; 5]).unwrap();
        second.set(&state, "acme", "p", "b", vec![0; 5]).unwrap(); // both fit alone
        committed(&state, &mut first).unwrap();
        assert!(committed(&state, &mut second).is_err());
        assert_eq!((state.get("acme", "p", "b"), state.used("acme", "p")), (None, 6));
    }

    #[test]
    fn deleting_a_missing_key_records_nothing_and_keys_per_call_are_capped() {
        let state = MemoryState::with_quota(1 << 30);
        let mut call = CallWrites::default();
        for i in 0..100_000 {
            call.delete(&state, "acme", "p", &format!("k{i}"));
        }
        assert!(call.take().is_empty());
        for i in 0..KEYS_PER_CALL {
            call.set(&state, "acme", "p", &format!("k{i}"), vec![1]).unwrap();
        }
        call.set(&state, "acme", "p", "k0", vec![2]).unwrap(); // a key already written
        let err = call.set(&state, "acme", "p", "one-more", vec![1]).unwrap_err();
        assert!(err.contains("at most 10000 distinct state keys"), "{err}");
        assert_eq!(call.take().len(), KEYS_PER_CALL);
    }
}
