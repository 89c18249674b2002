//! Helpers for the NATS store's tests: servers ([`NatsServer`]), settings,
//! a connected layout, messages to append.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::test_server::NatsServer;
use super::{Connection, Layout, Settings};
use crate::store::{NewMessage, StoreError};

/// The store's settings for the server at `url`.
pub fn settings(url: &str) -> Settings {
    Settings {
        url: url.to_string(),
        replicas: 1,
        retention: Duration::from_secs(7 * 86400),
        dedupe_window: Duration::from_secs(86400),
        connect_timeout: Duration::from_secs(5),
    }
}

/// The URLs of `nodes`, comma-separated, as `[store] url` takes them.
pub fn urls(nodes: &[NatsServer]) -> String {
    nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
}

/// A connection to `server` and the store's layout on it.
pub fn connected(server: &NatsServer) -> (Arc<Connection>, Layout) {
    let conn = Arc::new(Connection::open(&settings(&server.url())).unwrap());
    let layout = Layout::ensure(&conn, &settings(&server.url())).unwrap();
    (conn, layout)
}

/// A message of `tenant`'s pipeline `recs` to append.
pub fn message(id: &str, tenant: &str, key: Option<&str>, key_hash: u32) -> NewMessage {
    NewMessage {
        id: id.into(),
        tenant: tenant.into(),
        pipeline: "recs".into(),
        key_hash,
        idempotency_key: key.map(str::to_string),
        correlation: None,
        answers: None,
        json: format!(r#"{{"id":"{id}"}}"#),
        message: None,
    }
}

/// `call`'s result once it is not a transient failure, trying for up to
/// `secs` seconds (a cluster electing its leaders answers "unavailable").
pub fn once_available<T>(secs: u64, mut call: impl FnMut() -> Result<T, StoreError>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match call() {
            Ok(v) => return v,
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(250))
            }
            Err(e) => panic!("the store did not serve within {secs} s: {e}"),
        }
    }
}
