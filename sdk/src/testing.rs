//! Run plugin logic natively in unit tests: a [`TestHost`] stands in for the
//! host's config, reference tables, state, log and outbound HTTP on the
//! current thread.
//!
//! ```
//! use syncline_sdk::testing::TestHost;
//!
//! let host = TestHost::new()
//!     .config("site", "DC-1")
//!     .table_csv("moq", "item,moq\nSKU-1,120\n")
//!     .install();
//! assert_eq!(syncline_sdk::config::get("site").as_deref(), Some("DC-1"));
//! let row = syncline_sdk::reference::get("moq", "SKU-1").unwrap().unwrap();
//! assert_eq!(row.get("moq"), Some("120"));
//! drop(host);
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use syncline_model::table::RefTable;

use crate::http::{HttpError, Request, Response};
use crate::log::Level;

type Responder = Box<dyn FnMut(&Request) -> Result<Response, HttpError>>;

/// The stand-in host: what plugin code sees when it runs natively.
#[derive(Default)]
pub struct TestHost {
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) tables: BTreeMap<String, RefTable>,
    pub(crate) state: BTreeMap<String, Vec<u8>>,
    pub(crate) logs: Vec<(Level, String)>,
    pub(crate) http: Option<Responder>,
    pub(crate) requests: Vec<Request>,
    /// Configurations parsed by `config::cached` (the config is fixed once built).
    pub(crate) parsed: crate::config::Kept,
}

thread_local! {
    static CURRENT: RefCell<Option<TestHost>> = const { RefCell::new(None) };
}

/// Runs `f` on the installed test host; installs an empty one when none is.
pub(crate) fn with<R>(f: impl FnOnce(&mut TestHost) -> R) -> R {
    CURRENT.with(|c| f(c.borrow_mut().get_or_insert_with(TestHost::default)))
}

impl TestHost {
    /// An empty host: no config, tables or state.
    pub fn new() -> TestHost {
        TestHost::default()
    }

    /// Sets config `key` to `value`.
    pub fn config(mut self, key: &str, value: &str) -> TestHost {
        self.config.insert(key.to_string(), value.to_string());
        self.parsed.clear();
        self
    }

    /// Attaches a reference table from CSV text with a header line.
    ///
    /// # Panics
    ///
    /// When the CSV is malformed (a test bug).
    pub fn table_csv(mut self, name: &str, csv: &str) -> TestHost {
        let table = RefTable::from_csv(csv).unwrap_or_else(|e| panic!("table `{name}`: {e}"));
        self.tables.insert(name.to_string(), table);
        self
    }

    /// Attaches a reference table already read.
    pub fn with_table(mut self, name: &str, table: RefTable) -> TestHost {
        self.tables.insert(name.to_string(), table);
        self
    }

    /// Runs `f` with `host` as the current thread's host, then puts it (with
    /// whatever `f` changed) back in `host` and restores the previous one.
    /// Cheap: hosts are moved, not copied; several hosts can take turns on
    /// one thread (the benchmarks run native stages this way).
    pub fn enter<R>(host: &mut TestHost, f: impl FnOnce() -> R) -> R {
        let previous = CURRENT.with(|c| c.replace(Some(std::mem::take(host))));
        let out = f();
        *host = CURRENT.with(|c| c.replace(previous)).unwrap_or_default();
        out
    }

    /// Answers outbound HTTP requests with `responder`.
    pub fn http(mut self, responder: impl FnMut(&Request) -> Result<Response, HttpError> + 'static) -> TestHost {
        self.http = Some(Box::new(responder));
        self
    }

    /// Makes this the current thread's host until the guard drops.
    pub fn install(self) -> Installed {
        CURRENT.with(|c| *c.borrow_mut() = Some(self));
        Installed(())
    }

    pub(crate) fn table(&self, name: &str) -> Result<&RefTable, String> {
        self.tables.get(name).ok_or_else(|| format!("no reference table `{name}` is attached"))
    }
}

/// Guard for an installed [`TestHost`]; read what the plugin did through it.
pub struct Installed(());

impl Installed {
    /// Log lines written so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        with(|h| h.logs.clone())
    }

    /// Outbound HTTP requests sent so far.
    pub fn requests(&self) -> Vec<Request> {
        with(|h| h.requests.clone())
    }

    /// The state value under `key`.
    pub fn state(&self, key: &str) -> Option<Vec<u8>> {
        with(|h| h.state.get(key).cloned())
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}
