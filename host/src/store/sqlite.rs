//! The embedded store: SQLite in WAL mode. One writer thread owns the write
//! connection and commits every write waiting in its queue in one
//! transaction (group commit: one fsync for many messages); each write runs
//! in its own savepoint so one bad write cannot spoil its neighbours. Reads
//! use a second connection and see committed data only. WAL checkpoints run
//! on a third connection in their own thread, so the writer never stops to
//! copy the log into the database.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::Value;

use super::records::{
    Approval, AttemptRecord, AuditEntry, LoopFilter, LoopRecord, AuditFilter, AuditRecord, BaselineRecord, DeadLetterFilter, DeadLetterRecord, DeliveryRecord, ExceptionDetail, ExceptionFilter, ExceptionRecord, Input, scope_json, Replayed, Settle, SinkPause, Trace,
};
use super::compact;
use super::*;
use crate::config::{Sync, Tier};

/// A job of a group commit; it may be run a second time (see [`group`]), so
/// it borrows what it writes rather than consuming it. The messages it
/// accepts and the deliveries it queues go into the announcements it is
/// given (announced once the group is committed).
type Op = Box<dyn FnMut(&Transaction, &mut Announcements) -> rusqlite::Result<Box<dyn Any + Send>> + Send>;

/// What a group's jobs accepted and queued, each in queue order.
#[derive(Default)]
struct Announcements {
    appended: Vec<Appended>,
    queued: Vec<Queued>,
}

impl Announcements {
    /// How far it is filled (to drop what a failing job added).
    fn mark(&self) -> (usize, usize) {
        (self.appended.len(), self.queued.len())
    }

    fn truncate(&mut self, (appended, queued): (usize, usize)) {
        self.appended.truncate(appended);
        self.queued.truncate(queued);
    }

    /// Hands them to `watcher`: messages first (their deliveries come later).
    fn tell(self, watcher: &dyn QueueWatcher) {
        if !self.appended.is_empty() {
            watcher.appended(self.appended);
        }
        if !self.queued.is_empty() {
            watcher.queued(self.queued);
        }
    }
}
type Reply = tokio::sync::oneshot::Sender<Committed>;

/// Who is told of accepted messages and queued deliveries (see [`QueueWatcher`]).
type Watcher = Arc<arc_swap::ArcSwapOption<Arc<dyn QueueWatcher>>>;

/// The SQLite store.
pub struct SqliteStore {
    jobs: Mutex<mpsc::Sender<(Op, Reply)>>,
    read: Mutex<Connection>,
    closed: Arc<AtomicBool>,
    watcher: Watcher,
    /// The numbers of the plugin versions traces name (see `trace_plugins`).
    versions: Mutex<HashMap<(String, String), i64>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

/// Frames in the WAL (4 KiB pages) past which the writer finishes a
/// checkpoint itself, so that the log starts over (see [`checkpointer`]).
const WAL_RESTART_FRAMES: i64 = 4096;

/// What `PRAGMA wal_checkpoint` answered: frames in the log, frames copied
/// into the database.
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))
}

/// Copies the WAL into the database every 100 ms (passive: never waits for
/// readers or the writer), until the store is dropped.
///
/// Under a steady stream of commits this never catches up: the writer has
/// added frames by the time a pass ends, so the log is never fully copied
/// and never starts over. It grew by ~150 MB a second under batch ingest
/// (past 700 MB in a 100,000-message run): disk the log keeps, new blocks
/// the file system must zero, and a longer log for every read to search.
/// So the writer, told the log's length by every commit, copies the last
/// frames itself between two commits once the log is longer than
/// [`WAL_RESTART_FRAMES`] (see [`writer`]): then nothing is added
/// meanwhile, the copy completes, and the next commit starts the log over.
fn checkpointer(conn: Connection, closed: Arc<AtomicBool>) {
    while !closed.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if let Err(e) = checkpoint(&conn) {
            tracing::warn!(error = %e, "WAL checkpoint failed; will try again");
        }
    }
    let _ = checkpoint(&conn);
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    key_hash INTEGER NOT NULL,
    state TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    processed_at INTEGER,
    body TEXT NOT NULL,
    trace TEXT
);
CREATE INDEX IF NOT EXISTS messages_pending ON messages(tenant, pipeline, state, seq);
CREATE INDEX IF NOT EXISTS messages_finished ON messages(processed_at) WHERE state IN ('done', 'dropped');
CREATE TABLE IF NOT EXISTS idempotency (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    sink TEXT NOT NULL,
    ordering_key TEXT NOT NULL,
    key_hash INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL,
    reference TEXT,
    last_error TEXT,
    queued_at INTEGER NOT NULL,
    delivered_at INTEGER,
    UNIQUE (id, sink)
);
CREATE INDEX IF NOT EXISTS deliveries_delivered ON deliveries(delivered_at) WHERE state = 'delivered';
CREATE INDEX IF NOT EXISTS deliveries_source ON deliveries(source_id);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    digest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts(delivery_seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    message_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    place TEXT NOT NULL,
    plugin TEXT NOT NULL,
    digest TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_message ON dead_letters(message_id);
CREATE INDEX IF NOT EXISTS dead_letters_source ON dead_letters(source_id);
CREATE TABLE IF NOT EXISTS exceptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'open'
);
CREATE INDEX IF NOT EXISTS exceptions_message ON exceptions(message_id);
CREATE INDEX IF NOT EXISTS exceptions_source ON exceptions(source_id);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    queue TEXT NOT NULL,
    part INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    holder TEXT NOT NULL,
    token INTEGER NOT NULL,
    until INTEGER NOT NULL,
    PRIMARY KEY (queue, part, parts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS plugin_state (
    tenant TEXT NOT NULL,
    plugin TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (tenant, plugin, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS plugin_archive (
    digest TEXT PRIMARY KEY,
    bytes BLOB NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    source TEXT PRIMARY KEY,
    cursor TEXT NOT NULL,
    at INTEGER NOT NULL
);
-- A processed message's record in its stored form (store/compact.rs),
-- beside the message row rather than in it: written once, appended in
-- order, never rewritten (messages processed before this table existed
-- keep theirs in messages.trace).
CREATE TABLE IF NOT EXISTS traces (
    seq INTEGER PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS traces_follow_messages AFTER DELETE ON messages
BEGIN
    DELETE FROM traces WHERE seq = OLD.seq;
END;
-- Each planning pipeline's baseline: the latest approved record per kind, item and location.
CREATE TABLE IF NOT EXISTS baselines (
    tenant TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    kind TEXT NOT NULL,
    item TEXT NOT NULL,
    location TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (tenant, pipeline, kind, item, location)
) WITHOUT ROWID;
-- Sinks an operator paused.
CREATE TABLE IF NOT EXISTS loops (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_seq INTEGER NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    sink TEXT NOT NULL,
    message_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    correlation TEXT,
    reference TEXT,
    delivered_at INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'open',
    exception_id INTEGER,
    closed_by TEXT,
    closed_at INTEGER
);
CREATE INDEX IF NOT EXISTS loops_due ON loops(due_at) WHERE state = 'open';
CREATE INDEX IF NOT EXISTS loops_correlation ON loops(tenant, correlation) WHERE state != 'closed';
CREATE INDEX IF NOT EXISTS loops_reference ON loops(tenant, reference) WHERE state != 'closed';
CREATE TABLE IF NOT EXISTS plugin_approvals (
    plugin TEXT NOT NULL,
    digest TEXT NOT NULL,
    by TEXT NOT NULL,
    at INTEGER NOT NULL,
    note TEXT,
    PRIMARY KEY (plugin, digest)
);
-- The rollback in force per plugin (a records::Broadcast as JSON): made
-- again by the next start, while the plugin's file is the one it names.
CREATE TABLE IF NOT EXISTS rollbacks (
    plugin TEXT PRIMARY KEY,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sink_pauses (
    sink TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
-- The plugin versions traces name, by number.
CREATE TABLE IF NOT EXISTS trace_plugins (
    id INTEGER PRIMARY KEY,
    plugin TEXT NOT NULL,
    digest TEXT NOT NULL,
    UNIQUE (plugin, digest)
);
"#;

impl From<rusqlite::Error> for StoreError {
    /// The kind of an SQLite failure: a full disk or `max-size` is
    /// [`StoreError::Full`], a busy or unopenable file
    /// [`StoreError::Unavailable`], a damaged one [`StoreError::Corrupt`], a
    /// broken constraint [`StoreError::Conflict`].
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let text = e.to_string();
        match e.sqlite_error_code() {
            Some(C::DiskFull) => StoreError::Full(text),
            Some(C::DatabaseBusy | C::DatabaseLocked | C::CannotOpen | C::ReadOnly | C::SystemIoFailure) => StoreError::Unavailable(text),
            Some(C::DatabaseCorrupt | C::NotADatabase) => StoreError::Corrupt(text),
            Some(C::ConstraintViolation) => StoreError::Conflict(text),
            _ => StoreError::Other(text),
        }
    }
}

/// Columns added after the first schema, added to older databases.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("deliveries", "outcome_unknown", "INTEGER NOT NULL DEFAULT 0"),
    ("dead_letters", "outcome_unknown", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "next_at", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "errors", "TEXT"),
    ("dead_letters", "state", "TEXT NOT NULL DEFAULT 'open'"),
    ("dead_letters", "resolved_at", "INTEGER"),
    ("dead_letters", "note", "TEXT"),
    ("exceptions", "settled_at", "INTEGER"),
    ("exceptions", "note", "TEXT"),
    ("exceptions", "overdue_at", "INTEGER"),
    ("deliveries", "tier", "INTEGER NOT NULL DEFAULT 1"),
    ("audit", "actor", "TEXT NOT NULL DEFAULT 'host'"),
    ("messages", "correlation", "TEXT"),
    ("deliveries", "expect_ms", "INTEGER"),
    ("audit", "tenant", "TEXT"),
];

/// Indexes over added columns, made once the columns exist.
const ADDED_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS messages_waiting ON messages(tenant, pipeline, key_hash, seq) WHERE state = 'accepted' AND next_at > 0;
CREATE INDEX IF NOT EXISTS deliveries_waiting ON deliveries(sink, next_at) WHERE state = 'pending' AND next_at > 0;
CREATE INDEX IF NOT EXISTS dead_letters_resolved ON dead_letters(resolved_at) WHERE state != 'open';
CREATE INDEX IF NOT EXISTS dead_letters_open ON dead_letters(tenant, at) WHERE state = 'open';
CREATE INDEX IF NOT EXISTS exceptions_open ON exceptions(queue, id) WHERE state = 'open';
CREATE INDEX IF NOT EXISTS deliveries_lane ON deliveries(sink, tier, seq) WHERE state = 'pending';
-- Replaced by deliveries_lane (a lane's pending deliveries in order).
DROP INDEX IF EXISTS deliveries_pending;
-- A key's pending deliveries in order; a key is scoped to its tenant and pipeline.
DROP INDEX IF EXISTS deliveries_key;
CREATE INDEX IF NOT EXISTS deliveries_order ON deliveries(sink, tenant, pipeline, ordering_key, seq) WHERE state = 'pending';
-- Loops are opened by the delivery's acknowledgement itself (see
-- `ack_deliveries`): a trigger on every delivery's update made each one run
-- with a statement journal.
DROP TRIGGER IF EXISTS loops_open;
-- Only messages whose sender named a correlation: the rest are found by id.
CREATE INDEX IF NOT EXISTS messages_correlation ON messages(correlation, seq) WHERE correlation IS NOT NULL;
";

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, decl) in ADDED_COLUMNS {
        let present = conn.prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"))?.exists([column])?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    conn.execute_batch(ADDED_INDEXES)?;
    unscope_keys(conn)
}

/// Earlier versions kept a delivery's scope inside its ordering key — first
/// as `tenant/pipeline/key`, then as `{fnv32(tenant/pipeline):08x}/key` —
/// and rewrote older pending keys to their form: bytes in every row (9 of
/// them tipped the workload's delivery rows from five to four per page).
/// The scope is now the row's own tenant and pipeline columns: strip either
/// prefix where a row carries its own scope's, and put the keys back on
/// their plain key's partition. Once per store (`user_version` 2).
fn unscope_keys(conn: &Connection) -> rusqlite::Result<()> {
    use crate::pipeline::fields::key_hash;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= 2 {
        return Ok(());
    }
    let prefixed: Vec<(i64, String)> = conn
        .prepare(
            "SELECT seq, tenant, pipeline, ordering_key FROM deliveries
             WHERE ordering_key GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]/*'
                OR substr(ordering_key, 1, length(tenant) + length(pipeline) + 2) = tenant || '/' || pipeline || '/'",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?)))?
        .filter_map(|row| match row {
            Ok((seq, tenant, pipeline, key)) => {
                let named = format!("{tenant}/{pipeline}/");
                let hashed = format!("{:08x}/", key_hash(&format!("{tenant}/{pipeline}")));
                key.strip_prefix(&named).or_else(|| key.strip_prefix(&hashed)).map(|plain| Ok((seq, plain.to_string())))
            }
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    let tx = conn.unchecked_transaction()?;
    {
        let mut update = tx.prepare("UPDATE deliveries SET ordering_key = ?2, key_hash = ?3 WHERE seq = ?1")?;
        for (seq, key) in &prefixed {
            update.execute(params![seq, key, key_hash(key)])?;
        }
    }
    if !prefixed.is_empty() {
        tracing::info!(deliveries = prefixed.len(), "delivery ordering keys of an older store rewritten to their plain form");
    }
    tx.pragma_update(None, "user_version", 2)?;
    tx.commit()
}

fn open(path: &Path, sync: Sync, max_size: Option<usize>) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    if let Some(bytes) = max_size {
        // A size cap: past it every write fails with SQLITE_FULL, exactly as on a full disk.
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        conn.pragma_update(None, "max_page_count", (bytes as i64 / page).max(16))?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", match sync {
        Sync::Full => "FULL",
        Sync::Normal => "NORMAL",
    })?;
    // Savepoint and statement journals in memory, not in temporary files;
    // a page cache big enough for the hot end of the queues (32 MiB).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -32768)?;
    // After a checkpoint the WAL file is cut back to this size, so a burst
    // does not leave a large log behind for good.
    conn.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
    // Plans that do not depend on bound values. Without this a query with
    // `next_at > ?` beside a partial index `WHERE next_at > 0` is compiled
    // again whenever the value changes (the planner checks whether the
    // value makes the index usable): every claim re-parsed its SQL.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, capped at
    /// `max_size` bytes when given.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or its schema created.
    pub fn open(path: &Path, sync: Sync, max_size: Option<usize>) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        // A new file hands pruned pages back to the file system on demand
        // (set before anything is written to it; an older file reuses them).
        let new = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        if new {
            Connection::open(path)?.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        }
        let write = open(path, sync, max_size)?;
        write.execute_batch(SCHEMA)?;
        migrate(&write)?;
        // Checkpoints are the checkpointer thread's (and the writer's own
        // only to let a long log start over, see `checkpointer`).
        write.pragma_update(None, "wal_autocheckpoint", 0)?;
        let read = open(path, sync, max_size)?;
        let checkpoints = open(path, sync, max_size)?;
        let closed = Arc::new(AtomicBool::new(false));
        // The log's length in frames after the last commit.
        let frames = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let told = frames.clone();
        let mut write = write;
        write.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
            told.store(i64::from(pages), Ordering::Relaxed);
            Ok(())
        }))?;
        let (tx, rx) = mpsc::channel::<(Op, Reply)>();

        let watcher = Watcher::default();
        let told = watcher.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer(write, rx, frames, told))
            .map_err(|e| StoreError::Other(e.to_string()))?;
        let flag = closed.clone();
        std::thread::Builder::new()
            .name("store-checkpt".into())
            .spawn(move || checkpointer(checkpoints, flag))
            .map_err(|e| StoreError::Other(e.to_string()))?;
        Ok(SqliteStore { jobs: Mutex::new(tx), read: Mutex::new(read), closed, watcher, versions: Mutex::default() })
    }

    /// The number traces use for a plugin version, given one on first use.
    fn version(&self, plugin: &str, digest: &str) -> Result<i64, StoreError> {
        let mut versions = self.versions.lock().unwrap();
        if let Some(n) = versions.get(&(plugin.to_string(), digest.to_string())) {
            return Ok(*n);
        }
        let (p, d) = (plugin.to_string(), digest.to_string());
        let n = self.write(move |tx| {
            tx.execute("INSERT OR IGNORE INTO trace_plugins (plugin, digest) VALUES (?1, ?2)", params![p, d])?;
            tx.query_row("SELECT id FROM trace_plugins WHERE plugin = ?1 AND digest = ?2", params![p, d], |r| r.get(0))
        })?;
        versions.insert((plugin.to_string(), digest.to_string()), n);
        Ok(n)
    }

    /// Queues `f` for the next group commit; the commit's outcome arrives
    /// on the returned receiver.
    fn submit<R: Send + 'static>(
        &self,
        mut f: impl FnMut(&Transaction) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<Committed>, StoreError> {
        self.submit_queueing(move |tx, _| f(tx))
    }

    /// [`Self::submit`] for a job that accepts messages or queues
    /// deliveries (into its announcements).
    fn submit_queueing<R: Send + 'static>(
        &self,
        mut f: impl FnMut(&Transaction, &mut Announcements) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<Committed>, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let op: Op = Box::new(move |tx, queued| f(tx, queued).map(|r| Box::new(r) as Box<dyn Any + Send>));
        self.jobs.lock().unwrap().send((op, reply)).map_err(|_| StoreError::stopped())?;
        Ok(rx)
    }

    /// Runs `f` in the next group commit and waits (blocking the thread)
    /// until it is committed. Not for async tasks: they use [`Self::submit`].
    fn write<R: Send + 'static>(&self, f: impl FnMut(&Transaction) -> rusqlite::Result<R> + Send + 'static) -> Result<R, StoreError> {
        let out = self.submit(f)?.blocking_recv().map_err(|_| StoreError::stopped())??;
        Ok(*out.downcast::<R>().expect("store op returns its own type"))
    }
}

/// The writer thread: take every queued job, run them in one transaction
/// ([`group`]), commit once, announce the messages the group accepted and
/// the deliveries it queued (in queue order: groups commit one after the
/// other), then answer every
/// caller. If the transaction itself fails (e.g. the disk is full), every
/// caller of the group gets the error: none of their writes was kept.
fn writer(mut conn: Connection, rx: mpsc::Receiver<(Op, Reply)>, frames: Arc<std::sync::atomic::AtomicI64>, watcher: Watcher) {
    // A copy that could not complete (a reader holds an older snapshot)
    // is tried again once the log has grown by another quarter.
    let mut next_try = WAL_RESTART_FRAMES;
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 4096 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let (mut ops, replies): (Vec<Op>, Vec<Reply>) = jobs.into_iter().unzip();
        let mut told = Announcements::default();
        match group(&mut conn, &mut ops, &mut told) {
            Ok(results) => {
                // The jobs hold the messages they wrote: dropped first, the
                // announcements are the messages' only holders.
                drop(ops);
                if let Some(w) = watcher.load().as_ref() {
                    told.tell(w.as_ref().as_ref());
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; the writes of this group were not kept");
                let err = StoreError::from(e).context("commit failed");
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
        // Between two groups (the last one answered): finish the copy of
        // a long log so that the next commit starts it over.
        let log = frames.load(Ordering::Relaxed);
        if log > next_try {
            match checkpoint(&conn) {
                Ok((log, copied)) if copied >= log => next_try = WAL_RESTART_FRAMES,
                Ok(_) => next_try = log + WAL_RESTART_FRAMES / 4,
                Err(e) => tracing::debug!(error = %e, "the writer's WAL checkpoint did not run; will try again"),
            }
        } else if log <= WAL_RESTART_FRAMES {
            next_try = WAL_RESTART_FRAMES;
        }
    }
}

/// Runs a group's jobs in one transaction and commits it, answering each
/// job's own outcome. The jobs run straight through first: a savepoint per
/// job would copy every page each one touches, and a job fails only when
/// SQLite does (the disk, not the data). Then the group is rolled back and
/// run again with each job in its own savepoint, so that a failing job
/// loses its own writes and no one else's. An error that ends the
/// transaction itself (a full disk) fails the group. `told` gets the
/// messages and deliveries of the jobs that were kept, in queue order.
fn group(conn: &mut Connection, ops: &mut [Op], told: &mut Announcements) -> rusqlite::Result<Vec<Committed>> {
    {
        let tx = conn.transaction()?;
        let mut results = Vec::with_capacity(ops.len());
        let mut failed = None;
        for op in ops.iter_mut() {
            match op(&tx, told) {
                Ok(v) => results.push(Ok(v)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => {
                tx.commit()?;
                return Ok(results);
            }
            Some(e) if tx.is_autocommit() => return Err(e),
            // Alone in its group: the rollback is the job's alone.
            Some(e) if ops.len() == 1 => return Ok(vec![Err(e.into())]),
            Some(e) => tracing::debug!(error = %e, "a job of a group commit failed; running the group job by job"),
        }
    }
    *told = Announcements::default();
    let tx = conn.transaction()?;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops.iter_mut() {
        tx.prepare_cached("SAVEPOINT job")?.execute([])?;
        let before = told.mark();
        match op(&tx, told) {
            Ok(v) => {
                tx.prepare_cached("RELEASE job")?.execute([])?;
                results.push(Ok(v));
            }
            Err(e) => {
                told.truncate(before);
                if tx.execute_batch("ROLLBACK TO job; RELEASE job").is_err() {
                    return Err(e);
                }
                results.push(Err(e.into()));
            }
        }
    }
    tx.commit()?;
    Ok(results)
}

/// Accepts messages in `tx`: deduplicates on tenant + idempotency key,
/// inserts the new ones, and moves a source's cursor when given.
fn ingest(tx: &Transaction, messages: &[NewMessage], cursor: Option<&Cursor>, told: &mut Announcements) -> rusqlite::Result<Vec<IngestOutcome>> {
    let now = now_ms();
    let mut find = tx.prepare_cached("SELECT message_id FROM idempotency WHERE tenant = ?1 AND key = ?2")?;
    let mut remember = tx.prepare_cached("INSERT INTO idempotency (tenant, key, message_id, at) VALUES (?1, ?2, ?3, ?4)")?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (id, tenant, pipeline, key_hash, state, received_at, body, correlation) VALUES (?1, ?2, ?3, ?4, 'accepted', ?5, ?6, ?7)",
    )?;
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        if let Some(key) = &m.idempotency_key {
            if let Some(id) = find.query_row(params![m.tenant, key], |r| r.get::<_, String>(0)).optional()? {
                out.push(IngestOutcome::Duplicate { id });
                continue;
            }
            remember.execute(params![m.tenant, key, m.id, now])?;
        }
        insert.execute(params![m.id, m.tenant, m.pipeline, m.key_hash, now, m.json, m.correlation])?;
        told.appended.push(Appended { tenant: m.tenant.clone(), pipeline: m.pipeline.clone(), pending: Pending::accepted(tx.last_insert_rowid(), m) });
        if let Some(a) = &m.answers {
            // An execution status closes the loops it answers, in the commit
            // that accepts it: the order its reference names, or, when it
            // names none open, the orders of its flow.
            tx.prepare_cached(
                "UPDATE loops SET state = 'closed', closed_by = ?1, closed_at = ?2
                 WHERE tenant = ?3 AND state != 'closed'
                   AND (reference = ?5 OR (correlation = ?4 AND NOT EXISTS
                        (SELECT 1 FROM loops r WHERE r.tenant = ?3 AND r.state != 'closed' AND r.reference = ?5)))",
            )?
            .execute(params![m.id, now, m.tenant, a.correlation, a.order_ref])?;
        }
        out.push(IngestOutcome::Accepted { id: m.id.clone() });
    }
    if let Some(c) = cursor {
        tx.execute(
            "INSERT INTO cursors (source, cursor, at) VALUES (?1, ?2, ?3) ON CONFLICT(source) DO UPDATE SET cursor = ?2, at = ?3",
            params![c.source, c.position, now],
        )?;
    }
    Ok(out)
}

/// Parks an exception about a pipeline (not one of its messages); its number.
fn park(tx: &Transaction, tenant: &str, pipeline: &str, e: &NewException) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO exceptions (at, tenant, pipeline, queue, message_id, source_id, detail, body) VALUES (?1, ?2, ?3, ?4, ?5, '', ?6, ?7)",
        params![now_ms(), tenant, pipeline, e.queue, e.message_id, serde_json::to_string(&e.detail).unwrap(), e.json],
    )?;
    Ok(tx.last_insert_rowid())
}

/// The columns [`dead_letter_row`] reads.
const DEAD_LETTER: &str = "id, tenant, pipeline, source_id, at, place, plugin, digest, reason, attempts, message_id, outcome_unknown, state, resolved_at, note";

fn dead_letter_row(r: &rusqlite::Row) -> rusqlite::Result<DeadLetterRecord> {
    let unknown: bool = r.get(11)?;
    Ok(DeadLetterRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        pipeline: r.get(2)?,
        source_id: r.get(3)?,
        at: r.get(4)?,
        place: r.get(5)?,
        plugin: r.get(6)?,
        digest: r.get(7)?,
        reason: r.get(8)?,
        attempts: serde_json::from_str(&r.get::<_, String>(9)?).unwrap_or_default(),
        message_id: r.get(10)?,
        outcome: if unknown { "unknown" } else { "not-delivered" }.into(),
        state: r.get(12)?,
        resolved_at: r.get(13)?,
        note: r.get(14)?,
    })
}

/// Dead letter `id` in `tx`, for a change: `None` when there is none,
/// [`StoreError::Conflict`] when it is not open.
fn open_dead_letter(tx: &Transaction, id: i64) -> Result<Option<DeadLetterRecord>, StoreError> {
    let Some(d) = tx.query_row(&format!("SELECT {DEAD_LETTER} FROM dead_letters WHERE id = ?1"), params![id], dead_letter_row).optional()? else {
        return Ok(None);
    };
    if d.state != "open" {
        return Err(StoreError::Conflict(format!("dead letter {id} was already {}", d.state)));
    }
    Ok(Some(d))
}

/// The highest seq `table` ever gave (a pruned top row does not lower it).
fn highest_seq(tx: &Transaction, table: &str) -> rusqlite::Result<i64> {
    tx.prepare_cached("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = ?1), 0)")?.query_row(params![table], |r| r.get(0))
}

/// The columns [`pending_row`] reads.
const PENDING: &str = "seq, id, body, key_hash, attempts, errors";

fn pending_row(r: &rusqlite::Row) -> rusqlite::Result<Pending> {
    let errors: Option<String> = r.get(5)?;
    Ok(Pending {
        seq: r.get(0)?,
        id: r.get(1)?,
        json: r.get(2)?,
        key_hash: r.get(3)?,
        attempts: r.get(4)?,
        errors: errors.and_then(|e| serde_json::from_str(&e).ok()).unwrap_or_default(),
        message: None,
    })
}

/// Puts accepted message `id` back to work from its first stage; false
/// when it is not in the store or already at work.
fn reaccept(tx: &Transaction, id: &str) -> rusqlite::Result<bool> {
    let n = tx.execute("UPDATE messages SET state = 'accepted', attempts = 0, next_at = 0, errors = NULL WHERE id = ?1 AND state != 'accepted'", params![id])?;
    Ok(n > 0)
}

/// The columns [`delivery_row`] reads.
/// The ordering key comes scoped (as [`scoped_key`] makes it).
const DELIVERY: &str = "seq, id, tenant || char(31) || pipeline || char(31) || ordering_key, attempts, next_at, body, outcome_unknown, tier";

fn delivery_row(r: &rusqlite::Row) -> rusqlite::Result<Delivery> {
    let tier = Tier::from_index(r.get(7)?);
    Ok(Delivery {
        seq: r.get(0)?,
        id: r.get(1)?,
        ordering_key: r.get(2)?,
        tier,
        lane: tier,
        attempts: r.get(3)?,
        next_at: r.get(4)?,
        json: r.get(5)?,
        errors: Vec::new(),
        outcome_unknown: r.get(6)?,
        message: None,
    })
}

/// The columns [`exception_row`] reads.
const EXCEPTION: &str = "id, tenant, pipeline, source_id, at, queue, detail, state, message_id, settled_at, note, overdue_at";

fn exception_row(r: &rusqlite::Row) -> rusqlite::Result<ExceptionRecord> {
    let detail = serde_json::from_str(&r.get::<_, String>(6)?)
        .unwrap_or_else(|e| ExceptionDetail::Record { code: "unreadable".into(), text: format!("the stored detail does not parse: {e}"), severity: "error".into() });
    Ok(ExceptionRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        pipeline: r.get(2)?,
        source_id: r.get(3)?,
        at: r.get(4)?,
        queue: r.get(5)?,
        detail,
        state: r.get(7)?,
        message_id: r.get(8)?,
        settled_at: r.get(9)?,
        note: r.get(10)?,
        overdue_at: r.get(11)?,
    })
}

/// The plugin name and digest traces number `n`.
fn plugin_version(conn: &Connection, n: i64) -> Option<(String, String)> {
    conn.prepare_cached("SELECT plugin, digest FROM trace_plugins WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![n], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .ok()
        .flatten()
}

fn parse(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null)
}

/// The lease row of a partition: (holder, token, until).
fn lease_row(tx: &Transaction, p: &Partition) -> rusqlite::Result<Option<(String, i64, i64)>> {
    tx.prepare_cached("SELECT holder, token, until FROM leases WHERE queue = ?1 AND part = ?2 AND parts = ?3")?
        .query_row(params![p.queue.name(), p.index, p.of], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
}

/// `Ok(())` when `lease` is still the partition's (nobody took it over).
fn fenced(tx: &Transaction, lease: &Lease) -> rusqlite::Result<Result<(), StoreError>> {
    Ok(match lease_row(tx, &lease.partition)? {
        Some((holder, token, _)) if holder == lease.holder && token == lease.token => Ok(()),
        Some((holder, _, until)) => Err(lease_conflict(&lease.partition, &holder, until)),
        None => Err(StoreError::Conflict(format!("no lease on partition {} of {} of {}", lease.partition.index, lease.partition.of, lease.partition.queue.name()))),
    })
}

/// A message partition's keys waiting for a retry (few): the first of each
/// key blocks the key's later messages until it is due.
const MESSAGES_BLOCKED: &str = "SELECT key_hash, MIN(seq), MIN(next_at) FROM messages WHERE tenant = ?1 AND pipeline = ?2 AND state = 'accepted'
     AND next_at > 0 AND next_at > ?5 AND key_hash % ?3 = ?4 GROUP BY key_hash";

/// A delivery partition's keys waiting for a retry, as [`MESSAGES_BLOCKED`].
const DELIVERIES_BLOCKED: &str = "SELECT tenant || char(31) || pipeline || char(31) || ordering_key, MIN(seq), MIN(next_at) FROM deliveries
     WHERE sink = ?1 AND state = 'pending' AND next_at > 0 AND next_at > ?4 AND key_hash % ?2 = ?3 GROUP BY tenant, pipeline, ordering_key";

/// For each ordering key (`key_col`) of a partition with an item not due
/// at `now`, the first such item's seq; and the earliest next-attempt time.
fn blocked_keys<K: rusqlite::types::FromSql + std::hash::Hash + Eq>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<(std::collections::HashMap<K, i64>, Option<i64>)> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut blocked = std::collections::HashMap::new();
    let mut next_at: Option<i64> = None;
    for row in stmt.query_map(params, |r| Ok((r.get::<_, K>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))? {
        let (key, seq, at) = row?;
        blocked.insert(key, seq);
        next_at = Some(next_at.map_or(at, |n| n.min(at)));
    }
    Ok((blocked, next_at))
}

/// Records processed messages (settled or nacked) in `tx`.
/// `traces` holds each processed message's record in its stored form
/// (`None` for a nack).
fn ack(tx: &Transaction, commit: &Commit, traces: &[Option<String>], audit: &[AuditRow], told: &mut Announcements) -> rusqlite::Result<()> {
    let now = now_ms();
    for row in audit {
        row.insert(tx, now)?;
    }
    // Found, then updated by its row id: an UPDATE … RETURNING costs a
    // temporary table and a statement journal per message.
    let mut find = tx.prepare_cached("SELECT seq FROM messages WHERE id = ?1 AND state = 'accepted'")?;
    let mut mark = tx.prepare_cached("UPDATE messages SET state = ?2, processed_at = ?3 WHERE seq = ?1")?;
    let mut trace = tx.prepare_cached("INSERT OR REPLACE INTO traces (seq, data) VALUES (?1, ?2)")?;
    let mut queue = tx.prepare_cached(
        "INSERT OR IGNORE INTO deliveries (id, source_id, tenant, pipeline, sink, ordering_key, key_hash, state, body, queued_at, tier, expect_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?9, 'pending', ?7, ?8, ?10, ?11)",
    )?;
    let mut dead = tx.prepare_cached(
        "INSERT INTO dead_letters (at, tenant, pipeline, message_id, source_id, place, plugin, digest, reason, attempts, body)
         VALUES (?1, ?2, ?3, ?4, ?11, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut exception = tx.prepare_cached(
        "INSERT INTO exceptions (at, tenant, pipeline, queue, message_id, source_id, detail, body) VALUES (?1, ?2, ?3, ?4, ?5, ?8, ?6, ?7)",
    )?;
    let mut retry = tx.prepare_cached("UPDATE messages SET attempts = attempts + 1, next_at = ?2, errors = ?3 WHERE id = ?1 AND state = 'accepted'")?;
    for (p, data) in commit.processed.iter().zip(traces) {
        if let Some(r) = &p.retry {
            retry.execute(params![p.id, r.next_at, serde_json::to_string(&r.errors).unwrap()])?;
            continue;
        }
        let Some(seq) = find.query_row(params![p.id], |r| r.get::<_, i64>(0)).optional()? else {
            // Already processed (e.g. by a worker that raced a restart): keep the first result.
            continue;
        };
        mark.execute(params![seq, p.state.as_str(), now])?;
        if let Some(data) = data {
            trace.execute(params![seq, data])?;
        }
        for d in &p.deliveries {
            let hash = crate::pipeline::fields::key_hash(&d.ordering_key);
            if queue.execute(params![d.id, p.id, commit.tenant, commit.pipeline, d.sink, d.ordering_key, d.json, now, hash, d.tier.index() as i64, d.expect_ms])? == 1 {
                told.queued.push(Queued { sink: d.sink.clone(), key_hash: hash, delivery: Delivery::queued(tx.last_insert_rowid(), &commit.tenant, &commit.pipeline, d) });
            }
        }
        for d in &p.dead_letters {
            let attempts = serde_json::to_string(&d.attempts).unwrap();
            dead.execute(params![now, commit.tenant, commit.pipeline, d.message_id, d.place, d.plugin, d.digest, d.reason, attempts, d.json, p.id])?;
        }
        for b in &p.baseline {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO baselines (tenant, pipeline, kind, item, location, message_id, body, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![commit.tenant, commit.pipeline, b.kind, b.item, b.location, b.message_id, b.json, now])?;
        }
        for e in &p.exceptions {
            exception.execute(params![now, commit.tenant, commit.pipeline, e.queue, e.message_id, serde_json::to_string(&e.detail).unwrap(), e.json, p.id])?;
        }
    }
    Ok(())
}

/// An audit entry encoded for its table (on the caller's thread).
struct AuditRow {
    kind: &'static str,
    detail: String,
    actor: String,
    tenant: Option<String>,
}

impl AuditRow {
    fn of(entry: &AuditEntry) -> Result<AuditRow, StoreError> {
        let detail = serde_json::to_string(&entry.event).map_err(|e| StoreError::Other(e.to_string()))?;
        Ok(AuditRow { kind: entry.event.kind(), detail, actor: entry.actor.clone(), tenant: entry.tenant.clone() })
    }

    fn insert(&self, tx: &Transaction, at: i64) -> rusqlite::Result<()> {
        tx.prepare_cached("INSERT INTO audit (at, kind, detail, actor, tenant) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![at, self.kind, self.detail, self.actor, self.tenant])?;
        Ok(())
    }
}

/// Records delivery attempts of `sink` in `tx`.
fn ack_deliveries(tx: &Transaction, sink: &str, attempts: &[Attempt]) -> rusqlite::Result<()> {
    let now = now_ms();
    let mut log = tx.prepare_cached(
        "INSERT INTO attempts (delivery_seq, attempt, at, outcome, detail, digest)
         SELECT ?1, attempts + 1, ?2, ?3, ?4, ?5 FROM deliveries WHERE seq = ?1",
    )?;
    let mut delivered = tx.prepare_cached("UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, reference = ?2, delivered_at = ?3 WHERE seq = ?1")?;
    let mut expects = tx.prepare_cached("SELECT expect_ms FROM deliveries WHERE seq = ?1")?;
    for a in attempts {
        match &a.result {
            AttemptResult::Delivered(reference) => {
                // The success itself lives on the delivery row (reference,
                // delivered-at, attempts); only failures get attempt rows.
                delivered.execute(params![a.seq, reference, now])?;
                // A delivered order that expects an execution status opens
                // its loop in the same commit.
                if expects.query_row(params![a.seq], |r| r.get::<_, Option<i64>>(0)).optional()?.flatten().is_some() {
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO loops (delivery_seq, tenant, pipeline, sink, message_id, kind, correlation, reference, delivered_at, due_at)
                         SELECT seq, tenant, pipeline, sink, id, json_extract(body, '$.kind'), json_extract(body, '$.correlation-id'),
                                reference, delivered_at, delivered_at + expect_ms FROM deliveries WHERE seq = ?1",
                    )?
                    .execute(params![a.seq])?;
                }
            }
            AttemptResult::Retry { error, next_at, outcome_unknown } => {
                log.execute(params![a.seq, now, "retry", error, a.digest])?;
                tx.prepare_cached(
                    "UPDATE deliveries SET attempts = attempts + 1, next_at = ?2, last_error = ?3, outcome_unknown = outcome_unknown OR ?4 WHERE seq = ?1",
                )?
                .execute(params![a.seq, next_at, error, outcome_unknown])?;
            }
            AttemptResult::Dead(d) => {
                log.execute(params![a.seq, now, "dead", d.reason, a.digest])?;
                tx.prepare_cached("UPDATE deliveries SET state = 'dead', attempts = attempts + 1, last_error = ?2 WHERE seq = ?1")?
                    .execute(params![a.seq, d.reason])?;
                tx.prepare_cached(
                    "INSERT INTO dead_letters (at, tenant, pipeline, message_id, source_id, place, plugin, digest, reason, attempts, body, outcome_unknown)
                     SELECT ?1, tenant, pipeline, ?2, source_id, ?3, ?4, ?5, ?6, ?7, ?8, ?10 FROM deliveries WHERE seq = ?9",
                )?
                .execute(params![
                    now,
                    d.message_id,
                    format!("sink {sink}"),
                    d.plugin,
                    d.digest,
                    d.reason,
                    serde_json::to_string(&d.attempts).unwrap(),
                    d.json,
                    a.seq,
                    d.outcome_unknown
                ])?;
            }
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Runs `f` in the next group commit if `lease` still holds the
    /// partition; otherwise records nothing and says who has it.
    fn fenced_write(
        &self,
        lease: &Lease,
        mut f: impl FnMut(&Transaction, &mut Announcements) -> rusqlite::Result<()> + Send + 'static,
    ) -> Result<(), StoreError> {
        let lease = lease.clone();
        let rx = self.submit_queueing(move |tx, told| match fenced(tx, &lease)? {
            Ok(()) => f(tx, told).map(Ok),
            Err(e) => Ok(Err(e)),
        })?;
        Submitted::<Result<(), StoreError>>::waiting(rx).wait()?
    }
}

impl Store for SqliteStore {
    fn append(&self, messages: Vec<NewMessage>, cursor: Option<Cursor>) -> Submitted<Vec<IngestOutcome>> {
        match self.submit_queueing(move |tx, told| ingest(tx, &messages, cursor.as_ref(), told)) {
            Ok(rx) => Submitted::waiting(rx),
            Err(e) => Submitted::ready(Err(e)),
        }
    }

    fn lease(&self, partition: &Partition, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<Lease, StoreError> {
        let (partition, holder) = (partition.clone(), holder.to_string());
        self.write(move |tx| {
            let token = match lease_row(tx, &partition)? {
                Some((h, token, _)) if h == holder => token,
                Some((h, _, until)) if until > now_ms => return Ok(Err(lease_conflict(&partition, &h, until))),
                Some((_, token, _)) => token + 1,
                None => 1,
            };
            let until_ms = now_ms + ttl_ms;
            tx.prepare_cached(
                "INSERT INTO leases (queue, part, parts, holder, token, until) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (queue, part, parts) DO UPDATE SET holder = ?4, token = ?5, until = ?6",
            )?
            .execute(params![partition.queue.name(), partition.index, partition.of, holder, token, until_ms])?;
            Ok(Ok(Lease { partition: partition.clone(), holder: holder.clone(), token, until_ms }))
        })?
    }

    fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.write(move |tx| {
            tx.execute(
                "UPDATE leases SET until = 0 WHERE queue = ?1 AND part = ?2 AND parts = ?3 AND holder = ?4 AND token = ?5",
                params![lease.partition.queue.name(), lease.partition.index, lease.partition.of, lease.holder, lease.token],
            )?;
            Ok(())
        })
    }

    fn claim(&self, lease: &Lease, after_seq: i64, now_ms: i64, limit: usize) -> Result<Due<Pending>, StoreError> {
        let Queue::Messages { tenant, pipeline } = &lease.partition.queue else {
            return Err(StoreError::Other(format!("claim: {} is not a message queue", lease.partition.queue.name())));
        };
        let (index, of) = (lease.partition.index, lease.partition.of.max(1));
        let conn = self.read.lock().unwrap();
        // Messages waiting for a retry (few): the first of each key blocks
        // the key's later messages until it is due.
        let (blocked, next_at) = blocked_keys::<u32>(
            &conn,
            MESSAGES_BLOCKED,
            params![tenant, pipeline, of, index, now_ms],
        )?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {PENDING} FROM messages WHERE tenant = ?1 AND pipeline = ?2 AND state = 'accepted'
             AND seq > ?3 AND key_hash % ?4 = ?5 AND next_at <= ?6 ORDER BY seq LIMIT ?7"
        ))?;
        let rows = stmt.query_map(params![tenant, pipeline, after_seq, of, index, now_ms, limit as i64], pending_row)?;
        let mut due = Vec::new();
        for row in rows {
            let row = row?;
            if blocked.get(&row.key_hash).is_none_or(|first| *first > row.seq) {
                due.push(row);
            }
        }
        Ok(Due { rows: due, next_at })
    }

    fn ack(&self, lease: &Lease, commit: Commit) -> Result<(), StoreError> {
        // Encoded here, on the caller's thread, not on the writer's.
        let traces = commit
            .processed
            .iter()
            .map(|p| match p.retry {
                Some(_) => Ok(None),
                None => compact::encode(&p.processing, |plugin, digest| self.version(plugin, digest)).map(Some),
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let audit = commit.audit.iter().map(AuditRow::of).collect::<Result<Vec<_>, _>>()?;
        self.fenced_write(lease, move |tx, told| ack(tx, &commit, &traces, &audit, told))
    }

    fn claim_deliveries(&self, lease: &Lease, now_ms: i64, limit: usize) -> Result<Due<Delivery>, StoreError> {
        let Queue::Deliveries { sink } = &lease.partition.queue else {
            return Err(StoreError::Other(format!("claim_deliveries: {} is not a delivery queue", lease.partition.queue.name())));
        };
        let (index, of) = (lease.partition.index, lease.partition.of.max(1));
        let conn = self.read.lock().unwrap();
        let (blocked, next_at) = blocked_keys::<String>(
            &conn,
            DELIVERIES_BLOCKED,
            params![sink, of, index, now_ms],
        )?;
        // Which tiers wait here: with one, queue order is all there is.
        let tiers: Vec<i64> = conn
            .prepare_cached(
                "SELECT t.tier FROM (SELECT 0 AS tier UNION ALL SELECT 1 UNION ALL SELECT 2) t
                 WHERE EXISTS (SELECT 1 FROM deliveries WHERE sink = ?1 AND state = 'pending' AND tier = t.tier)",
            )?
            .query_map(params![sink], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut lane = conn.prepare_cached(&format!(
            "SELECT {DELIVERY} FROM deliveries
             WHERE sink = ?1 AND state = 'pending' AND tier = ?2 AND key_hash % ?3 = ?4 AND next_at <= ?5 ORDER BY seq LIMIT ?6"
        ))?;
        let mut head = conn.prepare_cached(&format!(
            "SELECT {DELIVERY} FROM deliveries WHERE sink = ?1 AND state = 'pending' AND tenant = ?2 AND pipeline = ?3 AND ordering_key = ?4 ORDER BY seq LIMIT 1"
        ))?;
        let mut errors = conn.prepare_cached("SELECT detail FROM attempts WHERE delivery_seq = ?1 ORDER BY attempt")?;
        let mut taken = std::collections::HashSet::new();
        let mut due = Vec::new();
        for &tier in &tiers {
            let rows: Vec<Delivery> = lane.query_map(params![sink, tier, of, index, now_ms, limit as i64], delivery_row)?.collect::<Result<_, _>>()?;
            let lane_start = due.len();
            for d in rows {
                if taken.contains(&d.ordering_key) || blocked.get(&d.ordering_key).is_some_and(|first| *first <= d.seq) {
                    continue;
                }
                // Its key's first pending delivery goes first (with one
                // tier waiting, queue order makes it this one).
                let mut d = if tiers.len() > 1 {
                    let (tenant, pipeline, key) = unscoped(&d.ordering_key);
                    head.query_row(params![sink, tenant, pipeline, key], delivery_row).optional()?.unwrap_or(d)
                } else {
                    d
                };
                if d.next_at > now_ms {
                    continue;
                }
                d.lane = Tier::from_index(tier);
                if d.attempts > 0 {
                    d.errors = errors.query_map(params![d.seq], |r| r.get(0))?.collect::<Result<_, _>>()?;
                }
                taken.insert(d.ordering_key.clone());
                due.push(d);
            }
            // Queue order within the lane (a key's first delivery may be older than the row that lifted it).
            due[lane_start..].sort_by_key(|d| d.seq);
        }
        Ok(Due { rows: due, next_at })
    }

    fn ack_deliveries(&self, lease: &Lease, attempts: Vec<Attempt>) -> Result<(), StoreError> {
        let Queue::Deliveries { sink } = lease.partition.queue.clone() else {
            return Err(StoreError::Other(format!("ack_deliveries: {} is not a delivery queue", lease.partition.queue.name())));
        };
        self.fenced_write(lease, move |tx, _| ack_deliveries(tx, &sink, &attempts))
    }

    fn snapshot_messages(&self, lease: &Lease, now_ms: i64, max: usize) -> Result<Option<Snapshot<Pending>>, StoreError> {
        let Queue::Messages { tenant, pipeline } = &lease.partition.queue else {
            return Err(StoreError::Other(format!("snapshot_messages: {} is not a message queue", lease.partition.queue.name())));
        };
        let (index, of) = (lease.partition.index, lease.partition.of.max(1));
        let conn = self.read.lock().unwrap();
        // One read transaction: the rows and `high` are of the same moment.
        let tx = conn.unchecked_transaction()?;
        let high = highest_seq(&tx, "messages")?;
        let waiting = tx
            .prepare_cached(
                "SELECT 1 FROM messages WHERE tenant = ?1 AND pipeline = ?2 AND state = 'accepted' AND next_at > 0 AND next_at > ?5 AND key_hash % ?3 = ?4 LIMIT 1",
            )?
            .exists(params![tenant, pipeline, of, index, now_ms])?;
        if waiting {
            return Ok(None);
        }
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {PENDING} FROM messages WHERE tenant = ?1 AND pipeline = ?2 AND state = 'accepted' AND key_hash % ?3 = ?4 ORDER BY seq LIMIT ?5"
        ))?;
        let rows = stmt.query_map(params![tenant, pipeline, of, index, max as i64 + 1], pending_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok((rows.len() <= max).then_some(Snapshot { rows, high }))
    }

    fn snapshot_deliveries(&self, lease: &Lease, now_ms: i64, max: usize) -> Result<Option<Snapshot<Delivery>>, StoreError> {
        let Queue::Deliveries { sink } = &lease.partition.queue else {
            return Err(StoreError::Other(format!("snapshot_deliveries: {} is not a delivery queue", lease.partition.queue.name())));
        };
        let (index, of) = (lease.partition.index, lease.partition.of.max(1));
        let conn = self.read.lock().unwrap();
        // One read transaction: the rows and `high` are of the same moment.
        let tx = conn.unchecked_transaction()?;
        let high = highest_seq(&tx, "deliveries")?;
        let waiting = tx
            .prepare_cached("SELECT 1 FROM deliveries WHERE sink = ?1 AND state = 'pending' AND next_at > 0 AND next_at > ?4 AND key_hash % ?2 = ?3 LIMIT 1")?
            .exists(params![sink, of, index, now_ms])?;
        if waiting {
            return Ok(None);
        }
        let mut lane = tx.prepare_cached(&format!(
            "SELECT {DELIVERY} FROM deliveries WHERE sink = ?1 AND state = 'pending' AND tier = ?2 AND key_hash % ?3 = ?4 ORDER BY seq LIMIT ?5"
        ))?;
        let mut rows: Vec<Delivery> = Vec::new();
        for tier in Tier::ALL {
            for d in lane.query_map(params![sink, tier.index() as i64, of, index, max as i64 + 1], delivery_row)? {
                rows.push(d?);
                if rows.len() > max {
                    return Ok(None);
                }
            }
        }
        rows.sort_by_key(|d| d.seq);
        let mut errors = tx.prepare_cached("SELECT detail FROM attempts WHERE delivery_seq = ?1 ORDER BY attempt")?;
        for d in rows.iter_mut().filter(|d| d.attempts > 0) {
            d.errors = errors.query_map(params![d.seq], |r| r.get(0))?.collect::<Result<_, _>>()?;
        }
        Ok(Some(Snapshot { rows, high }))
    }

    fn watch(&self, watcher: Arc<dyn QueueWatcher>) {
        self.watcher.store(Some(Arc::new(watcher)));
    }

    fn cursor(&self, source: &str) -> Result<Option<String>, StoreError> {
        let conn = self.read.lock().unwrap();
        Ok(conn.query_row("SELECT cursor FROM cursors WHERE source = ?1", params![source], |r| r.get(0)).optional()?)
    }

    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let row = AuditRow::of(entry)?;
        self.write(move |tx| row.insert(tx, now_ms()))
    }

    fn audit_events(&self, filter: &AuditFilter, after: i64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let conn = self.read.lock().unwrap();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at, detail, actor, tenant FROM audit
             WHERE id > ?1 AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR actor = ?3) AND (?4 IS NULL OR tenant = ?4)
               AND (?5 IS NULL OR tenant IN (SELECT value FROM json_each(?5))) AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7)
             ORDER BY id LIMIT ?8",
        )?;
        let f = filter;
        let rows = stmt.query_map(params![after, f.kind, f.actor, f.tenant, scope_json(&f.scope), f.since, f.until, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, Option<String>>(4)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at, detail, actor, tenant) = row?;
            match serde_json::from_str(&detail) {
                Ok(event) => out.push(AuditRecord { id, at, actor, tenant, event }),
                Err(e) => tracing::warn!(id, error = %e, "an audit event of an older format is left out"),
            }
        }
        Ok(out)
    }

    fn state(&self) -> Result<Vec<StateEntry>, StoreError> {
        let conn = self.read.lock().unwrap();
        let mut stmt = conn.prepare("SELECT tenant, plugin, key, value FROM plugin_state")?;
        let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_state(&self, tenant: &str, plugin: &str, writes: Vec<(String, Option<Vec<u8>>)>) -> Submitted<()> {
        let (tenant, plugin) = (tenant.to_string(), plugin.to_string());
        let submitted = self.submit(move |tx| {
            for (key, value) in &writes {
                match value {
                    Some(v) => tx
                        .prepare_cached("INSERT INTO plugin_state (tenant, plugin, key, value) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO UPDATE SET value = ?4")?
                        .execute(params![tenant, plugin, key, v])?,
                    None => tx.prepare_cached("DELETE FROM plugin_state WHERE tenant = ?1 AND plugin = ?2 AND key = ?3")?.execute(params![tenant, plugin, key])?,
                };
            }
            Ok(())
        });
        match submitted {
            Ok(rx) => Submitted::waiting(rx),
            Err(e) => Submitted::ready(Err(e)),
        }
    }

    fn archive(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        // Most reloads bring back a version the archive has: asked first,
        // so as not to copy (and bind) 12 MB for an insert that is ignored.
        let known = self.read.lock().unwrap().query_row("SELECT 1 FROM plugin_archive WHERE digest = ?1", params![digest], |_| Ok(())).optional()?;
        if known.is_some() {
            return Ok(());
        }
        let (digest, bytes) = (digest.to_string(), bytes.to_vec());
        self.write(move |tx| {
            tx.execute("INSERT OR IGNORE INTO plugin_archive (digest, bytes, at) VALUES (?1, ?2, ?3)", params![digest, bytes, now_ms()])?;
            Ok(())
        })
    }

    fn archived(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.read.lock().unwrap();
        Ok(conn.query_row("SELECT bytes FROM plugin_archive WHERE digest = ?1", params![digest], |r| r.get(0)).optional()?)
    }

    fn trace(&self, id: &str) -> Result<Option<Trace>, StoreError> {
        let conn = self.read.lock().unwrap();
        let input = conn
            .query_row(
                "SELECT tenant, pipeline, state, received_at, processed_at, body, trace, attempts, errors, next_at,
                        (SELECT data FROM traces t WHERE t.seq = m.seq) FROM messages m WHERE id = ?1",
                params![id],
                |r| {
                    Ok(Input {
                        tenant: r.get(0)?,
                        pipeline: r.get(1)?,
                        state: r.get(2)?,
                        received_at: r.get(3)?,
                        processed_at: r.get(4)?,
                        message: parse(Some(r.get(5)?)),
                        processing: match (r.get::<_, Option<String>>(10)?, r.get::<_, Option<String>>(6)?) {
                            (Some(stored), _) => compact::decode(&stored, |n| plugin_version(&conn, n)),
                            // Recorded before traces had their own table.
                            (None, old) => old.and_then(|t| serde_json::from_str(&t).ok()),
                        },
                        attempts: r.get(7)?,
                        retry_errors: r.get::<_, Option<String>>(8)?.and_then(|t| serde_json::from_str(&t).ok()),
                        next_attempt_at: r.get(9)?,
                    })
                },
            )
            .optional()?;
        let delivery_rows = |sql: &str| -> rusqlite::Result<Vec<DeliveryRecord>> {
            let mut stmt = conn.prepare(sql)?;
            let rows: Vec<(i64, DeliveryRecord)> = stmt
                .query_map(params![id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        DeliveryRecord {
                            id: r.get(1)?,
                            source_id: r.get(2)?,
                            sink: r.get(3)?,
                            state: r.get(4)?,
                            reference: r.get(5)?,
                            queued_at: r.get(6)?,
                            delivered_at: r.get(7)?,
                            message: parse(Some(r.get(8)?)),
                            attempts: Vec::new(),
                        },
                    ))
                })?
                .collect::<Result<_, _>>()?;
            let mut attempts = conn.prepare("SELECT attempt, at, outcome, detail, digest FROM attempts WHERE delivery_seq = ?1 ORDER BY attempt")?;
            rows.into_iter()
                .map(|(seq, mut d)| {
                    d.attempts = attempts
                        .query_map(params![seq], |r| {
                            Ok(AttemptRecord { attempt: r.get(0)?, at: r.get(1)?, outcome: r.get(2)?, detail: r.get(3)?, digest: r.get(4)? })
                        })?
                        .collect::<Result<_, _>>()?;
                    // A success lives on the delivery row itself.
                    if d.state == "delivered" {
                        let attempt = d.attempts.len() as i64 + 1;
                        d.attempts.push(AttemptRecord { attempt, at: d.delivered_at, outcome: "delivered".into(), detail: d.reference.clone(), digest: None });
                    }
                    Ok(d)
                })
                .collect()
        };
        const COLUMNS: &str = "seq, id, source_id, sink, state, reference, queued_at, delivered_at, body";
        let outputs = delivery_rows(&format!("SELECT {COLUMNS} FROM deliveries WHERE source_id = ?1 ORDER BY seq"))?;
        let deliveries = delivery_rows(&format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1 ORDER BY seq"))?;
        let mut dead = conn.prepare(&format!("SELECT {DEAD_LETTER} FROM dead_letters WHERE message_id = ?1 OR source_id = ?1 ORDER BY id"))?;
        let dead_letters: Vec<DeadLetterRecord> = dead.query_map(params![id], dead_letter_row)?.collect::<Result<_, _>>()?;
        let mut exc = conn.prepare(&format!("SELECT {EXCEPTION} FROM exceptions WHERE message_id = ?1 OR source_id = ?1 ORDER BY id"))?;
        let exceptions: Vec<ExceptionRecord> = exc.query_map(params![id], exception_row)?.collect::<Result<_, _>>()?;
        if input.is_none() && deliveries.is_empty() && dead_letters.is_empty() && exceptions.is_empty() {
            return Ok(None);
        }
        Ok(Some(Trace { id: id.to_string(), input, outputs, deliveries, dead_letters, exceptions }))
    }

    fn loops(&self, f: &LoopFilter, after: i64, limit: usize) -> Result<Vec<LoopRecord>, StoreError> {
        let conn = self.read.lock().unwrap();
        let mut stmt = conn.prepare_cached(
            "SELECT id, tenant, pipeline, sink, message_id, kind, correlation, reference, delivered_at, due_at, state, exception_id, closed_by, closed_at FROM loops l
             WHERE id > ?1 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR tenant IN (SELECT value FROM json_each(?3))) AND (?4 IS NULL OR due_at < ?4)
               AND (?5 = 0 OR (state = 'closed' AND EXISTS (SELECT 1 FROM exceptions e WHERE e.id = l.exception_id AND e.state = 'open')))
             ORDER BY id LIMIT ?6",
        )?;
        let rows = stmt.query_map(params![after, f.state, scope_json(&f.scope), f.due_before, f.closed_late_unsettled, limit as i64], |r| {
            Ok(LoopRecord {
                id: r.get(0)?,
                tenant: r.get(1)?,
                pipeline: r.get(2)?,
                sink: r.get(3)?,
                message_id: r.get(4)?,
                kind: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                correlation: r.get(6)?,
                reference: r.get(7)?,
                delivered_at: r.get(8)?,
                due_at: r.get(9)?,
                state: r.get(10)?,
                exception_id: r.get(11)?,
                closed_by: r.get(12)?,
                closed_at: r.get(13)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn loop_overdue(&self, id: i64, e: NewException) -> Result<Option<i64>, StoreError> {
        self.write(move |tx| {
            let Some((tenant, pipeline)) = tx
                .query_row("SELECT tenant, pipeline FROM loops WHERE id = ?1 AND state = 'open'", params![id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .optional()?
            else {
                return Ok(None);
            };
            let exception = park(tx, &tenant, &pipeline, &e)?;
            tx.execute("UPDATE loops SET state = 'overdue', exception_id = ?2 WHERE id = ?1", params![id, exception])?;
            Ok(Some(exception))
        })
    }

    fn correlated(&self, correlation: &str, scope: &Option<Vec<String>>, limit: usize) -> Result<Vec<String>, StoreError> {
        let conn = self.read.lock().unwrap();
        let mut stmt = conn.prepare_cached(
            "SELECT id FROM (SELECT seq, id, tenant FROM messages WHERE id = ?1 UNION SELECT seq, id, tenant FROM messages WHERE correlation = ?1)
             WHERE ?2 IS NULL OR tenant IN (SELECT value FROM json_each(?2)) ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![correlation, scope_json(scope), limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn dead_letters(&self, filter: &DeadLetterFilter, after: i64, limit: usize) -> Result<Vec<DeadLetterRecord>, StoreError> {
        let conn = self.read.lock().unwrap();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DEAD_LETTER} FROM dead_letters
             WHERE id > ?1 AND (?2 = 'all' OR state = ?2) AND (?3 IS NULL OR tenant = ?3) AND (?4 IS NULL OR pipeline = ?4)
               AND (?5 IS NULL OR substr(place, 1, length(?5)) = ?5) AND (?6 IS NULL OR instr(reason, ?6) > 0) AND (?7 IS NULL OR at < ?7)
               AND (?9 IS NULL OR tenant IN (SELECT value FROM json_each(?9)))
             ORDER BY id LIMIT ?8"
        ))?;
        let f = filter;
        let rows = stmt.query_map(params![after, f.state(), f.tenant, f.pipeline, f.place, f.reason, f.before, limit as i64, scope_json(&f.scope)], dead_letter_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn dead_letter(&self, id: i64) -> Result<Option<(DeadLetterRecord, Value)>, StoreError> {
        let conn = self.read.lock().unwrap();
        let row = conn
            .query_row(&format!("SELECT {DEAD_LETTER}, body FROM dead_letters WHERE id = ?1"), params![id], |r| Ok((dead_letter_row(r)?, parse(Some(r.get(15)?)))))
            .optional()?;
        Ok(row)
    }

    fn replay_dead_letter(&self, id: i64) -> Result<Option<Replayed>, StoreError> {
        let replayed = self.write(move |tx| {
            let Some(d) = (match open_dead_letter(tx, id) {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            }) else {
                return Ok(Ok(None));
            };
            let now = now_ms();
            let replayed = if let Some(sink) = d.place.strip_prefix("sink ") {
                let n = tx.execute(
                    "UPDATE deliveries SET state = 'pending', attempts = 0, next_at = 0, last_error = NULL WHERE id = ?1 AND sink = ?2 AND state = 'dead'",
                    params![d.message_id, sink],
                )?;
                if n == 0 {
                    return Ok(Err(StoreError::Conflict(format!("the output {} of dead letter {id} is no longer dead in the store", d.message_id))));
                }
                tx.execute("UPDATE dead_letters SET state = 'replayed', resolved_at = ?2 WHERE id = ?1", params![id, now])?;
                Replayed::Delivery { sink: sink.to_string(), id: d.message_id }
            } else {
                if !reaccept(tx, &d.source_id)? {
                    return Ok(Err(StoreError::Conflict(format!("the message {} of dead letter {id} is no longer in the store, or already at work", d.source_id))));
                }
                tx.execute(
                    "UPDATE dead_letters SET state = 'replayed', resolved_at = ?2 WHERE source_id = ?1 AND state = 'open' AND substr(place, 1, 5) != 'sink '",
                    params![d.source_id, now],
                )?;
                Replayed::Message { tenant: d.tenant, pipeline: d.pipeline, id: d.source_id }
            };
            Ok(Ok(Some(replayed)))
        })??;
        if let Some(w) = self.watcher.load().as_ref() {
            match &replayed {
                Some(Replayed::Delivery { sink, .. }) => w.requeued(sink),
                Some(Replayed::Message { tenant, pipeline, .. }) => w.reopened(tenant, pipeline),
                None => {}
            }
        }
        Ok(replayed)
    }

    fn purge_dead_letter(&self, id: i64, reason: &str) -> Result<Option<DeadLetterRecord>, StoreError> {
        let reason = reason.to_string();
        self.write(move |tx| {
            let Some(mut d) = (match open_dead_letter(tx, id) {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            }) else {
                return Ok(Ok(None));
            };
            let now = now_ms();
            tx.execute("UPDATE dead_letters SET state = 'purged', resolved_at = ?2, note = ?3 WHERE id = ?1", params![id, now, reason])?;
            (d.state, d.resolved_at, d.note) = ("purged".into(), Some(now), Some(reason.clone()));
            Ok(Ok(Some(d)))
        })?
    }

    fn exceptions(&self, filter: &ExceptionFilter, after: i64, limit: usize) -> Result<Vec<ExceptionRecord>, StoreError> {
        let conn = self.read.lock().unwrap();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {EXCEPTION} FROM exceptions
             WHERE id > ?1 AND (?2 = 'all' OR state = ?2) AND (?3 IS NULL OR queue = ?3) AND (?4 IS NULL OR tenant = ?4)
               AND (?5 IS NULL OR pipeline = ?5) AND (?6 IS NULL OR at < ?6)
               AND (?8 IS NULL OR tenant IN (SELECT value FROM json_each(?8)))
             ORDER BY id LIMIT ?7"
        ))?;
        let f = filter;
        let rows = stmt.query_map(params![after, f.state(), f.queue, f.tenant, f.pipeline, f.before, limit as i64, scope_json(&f.scope)], exception_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn exception(&self, id: i64) -> Result<Option<(ExceptionRecord, Value)>, StoreError> {
        let conn = self.read.lock().unwrap();
        let row = conn
            .query_row(&format!("SELECT {EXCEPTION}, body FROM exceptions WHERE id = ?1"), params![id], |r| Ok((exception_row(r)?, parse(Some(r.get(12)?)))))
            .optional()?;
        Ok(row)
    }

    fn settle_exception(&self, id: i64, how: &Settle) -> Result<Option<ExceptionRecord>, StoreError> {
        let retried = matches!(how, Settle::Retry { .. });
        let how = how.clone();
        let settled = self.write(move |tx| {
            let Some(mut e) = tx.query_row(&format!("SELECT {EXCEPTION} FROM exceptions WHERE id = ?1"), params![id], exception_row).optional()? else {
                return Ok(Ok(None));
            };
            if e.state != "open" {
                return Ok(Err(StoreError::Conflict(format!("exception {id} was already {}", e.state))));
            }
            let now = now_ms();
            if let Settle::Retry { .. } = how {
                if !reaccept(tx, &e.source_id)? {
                    return Ok(Err(StoreError::Conflict(format!("the message {} of exception {id} is no longer in the store, or already at work", e.source_id))));
                }
                // The new run parks whatever is still wrong anew.
                tx.execute(
                    "UPDATE exceptions SET state = 'retried', settled_at = ?2, note = ?3 WHERE source_id = ?1 AND state = 'open'",
                    params![e.source_id, now, how.note()],
                )?;
            }
            tx.execute("UPDATE exceptions SET state = ?2, settled_at = ?3, note = ?4 WHERE id = ?1", params![id, how.state(), now, how.note()])?;
            (e.state, e.settled_at, e.note) = (how.state().into(), Some(now), Some(how.note().into()));
            Ok(Ok(Some(e)))
        })??;
        if let (true, Some(e), Some(w)) = (retried, &settled, self.watcher.load().as_ref()) {
            // Accepted again under its old seq: its shard reads the store.
            w.reopened(&e.tenant, &e.pipeline);
        }
        Ok(settled)
    }

    fn mark_exception_overdue(&self, id: i64, at: i64) -> Result<(), StoreError> {
        self.write(move |tx| tx.execute("UPDATE exceptions SET overdue_at = ?2 WHERE id = ?1", params![id, at]).map(drop))
    }

    fn baselines(&self, tenant: &str, pipeline: &str) -> Result<Vec<BaselineRecord>, StoreError> {
        let conn = self.read.lock().unwrap();
        let mut stmt = conn.prepare_cached(
            "SELECT kind, item, location, message_id, at, body FROM baselines WHERE tenant = ?1 AND pipeline = ?2 ORDER BY kind, item, location",
        )?;
        let rows = stmt.query_map(params![tenant, pipeline], |r| {
            Ok(BaselineRecord { kind: r.get(0)?, item: r.get(1)?, location: r.get(2)?, message_id: r.get(3)?, at: r.get(4)?, message: parse(Some(r.get(5)?)) })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn baseline_updated(&self, tenant: &str, pipeline: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.read.lock().unwrap();
        Ok(conn.query_row("SELECT MAX(at) FROM baselines WHERE tenant = ?1 AND pipeline = ?2", params![tenant, pipeline], |r| r.get(0))?)
    }

    fn park(&self, tenant: &str, pipeline: &str, e: NewException) -> Result<(), StoreError> {
        let (tenant, pipeline) = (tenant.to_string(), pipeline.to_string());
        self.write(move |tx| park(tx, &tenant, &pipeline, &e).map(drop))
    }

    fn approve_plugin(&self, a: &Approval) -> Result<(), StoreError> {
        let a = a.clone();
        self.write(move |tx| {
            tx.execute("INSERT OR REPLACE INTO plugin_approvals (plugin, digest, by, at, note) VALUES (?1, ?2, ?3, ?4, ?5)", params![a.plugin, a.digest, a.by, a.at, a.note])?;
            Ok(())
        })
    }

    fn revoke_plugin_approval(&self, plugin: &str, digest: &str) -> Result<bool, StoreError> {
        let (plugin, digest) = (plugin.to_string(), digest.to_string());
        self.write(move |tx| Ok(tx.execute("DELETE FROM plugin_approvals WHERE plugin = ?1 AND digest = ?2", params![plugin, digest])? > 0))
    }

    fn plugin_approvals(&self) -> Result<Vec<Approval>, StoreError> {
        let conn = self.read.lock().unwrap();
        let mut stmt = conn.prepare("SELECT plugin, digest, by, at, note FROM plugin_approvals ORDER BY plugin, at")?;
        let rows = stmt.query_map([], |r| Ok(Approval { plugin: r.get(0)?, digest: r.get(1)?, by: r.get(2)?, at: r.get(3)?, note: r.get(4)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn broadcast(&self, b: &records::Broadcast) -> Result<bool, StoreError> {
        // Nobody else to tell; a rollback is kept for the next start.
        if let records::ClusterCommand::RollBack { plugin, .. } = &b.command {
            let (plugin, json) = (plugin.clone(), serde_json::to_string(b).expect("a broadcast serializes"));
            self.write(move |tx| tx.execute("INSERT OR REPLACE INTO rollbacks (plugin, json) VALUES (?1, ?2)", params![plugin, json]).map(drop))?;
        }
        Ok(false)
    }

    fn rollbacks(&self) -> Result<Vec<records::Broadcast>, StoreError> {
        let conn = self.read.lock().unwrap();
        let mut stmt = conn.prepare("SELECT json FROM rollbacks ORDER BY plugin")?;
        let rows: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(rows
            .iter()
            .filter_map(|json| match serde_json::from_str(json) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "a kept rollback does not read as one; ignored");
                    None
                }
            })
            .collect())
    }

    fn end_rollback(&self, plugin: &str, file_digest: &str) -> Result<(), StoreError> {
        let (plugin, file_digest) = (plugin.to_string(), file_digest.to_string());
        self.write(move |tx| {
            let json: Option<String> = tx.query_row("SELECT json FROM rollbacks WHERE plugin = ?1", params![plugin], |r| r.get(0)).optional()?;
            let ends = json.and_then(|j| serde_json::from_str::<records::Broadcast>(&j).ok()).is_none_or(|b| b.command.rolls_back_from(&file_digest));
            if ends {
                tx.execute("DELETE FROM rollbacks WHERE plugin = ?1", params![plugin])?;
            }
            Ok(())
        })
    }

    fn sink_pauses(&self) -> Result<BTreeMap<String, SinkPause>, StoreError> {
        let conn = self.read.lock().unwrap();
        let mut stmt = conn.prepare("SELECT sink, reason, at FROM sink_pauses")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, SinkPause { reason: r.get(1)?, at: r.get(2)? })))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_sink_pause(&self, sink: &str, pause: Option<&SinkPause>) -> Result<(), StoreError> {
        let (sink, pause) = (sink.to_string(), pause.cloned());
        self.write(move |tx| {
            match &pause {
                Some(p) => tx.execute("INSERT OR REPLACE INTO sink_pauses (sink, reason, at) VALUES (?1, ?2, ?3)", params![sink, p.reason, p.at])?,
                None => tx.execute("DELETE FROM sink_pauses WHERE sink = ?1", params![sink])?,
            };
            Ok(())
        })
    }

    fn prune_idempotency(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write(move |tx| tx.execute("DELETE FROM idempotency WHERE at < ?1", params![before_ms]))
    }

    fn prune(&self, before_ms: i64) -> Result<Pruned, StoreError> {
        // In chunks, each its own write, so ingest never waits long behind it.
        const CHUNK: i64 = 5_000;
        let mut total = Pruned::default();
        loop {
            let (deliveries, messages) = self.write(move |tx| {
                tx.execute(
                    "DELETE FROM attempts WHERE delivery_seq IN
                       (SELECT seq FROM deliveries WHERE state = 'delivered' AND delivered_at < ?1 LIMIT ?2)",
                    params![before_ms, CHUNK],
                )?;
                let deliveries = tx.execute(
                    "DELETE FROM deliveries WHERE seq IN
                       (SELECT seq FROM deliveries WHERE state = 'delivered' AND delivered_at < ?1 LIMIT ?2)",
                    params![before_ms, CHUNK],
                )?;
                // Exceptions settled (open ones stay until then).
                tx.execute(
                    "DELETE FROM exceptions WHERE id IN (SELECT id FROM exceptions WHERE state != 'open' AND settled_at < ?1 LIMIT ?2)",
                    params![before_ms, CHUNK],
                )?;
                // Closed loops (open and overdue ones stay until a status comes).
                tx.execute("DELETE FROM loops WHERE id IN (SELECT id FROM loops WHERE state = 'closed' AND closed_at < ?1 LIMIT ?2)", params![before_ms, CHUNK])?;
                // Dead letters replayed or purged (open ones stay until then).
                tx.execute(
                    "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE state != 'open' AND resolved_at < ?1 LIMIT ?2)",
                    params![before_ms, CHUNK],
                )?;
                let messages = tx.execute(
                    "DELETE FROM messages WHERE seq IN
                       (SELECT seq FROM messages m WHERE state IN ('done', 'dropped', 'exception', 'dead') AND processed_at < ?1
                          AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.source_id = m.id)
                          AND NOT EXISTS (SELECT 1 FROM exceptions e WHERE e.source_id = m.id)
                          AND NOT EXISTS (SELECT 1 FROM dead_letters x WHERE x.source_id = m.id) LIMIT ?2)",
                    params![before_ms, CHUNK],
                )?;
                Ok((deliveries, messages))
            })?;
            total.deliveries += deliveries;
            total.messages += messages;
            if (deliveries as i64) < CHUNK && (messages as i64) < CHUNK {
                break;
            }
        }
        if total.deliveries + total.messages > 0 {
            total.pages_freed = self.write(|tx| {
                let free: i64 = tx.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                let mut stmt = tx.prepare("PRAGMA incremental_vacuum")?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
                let left: i64 = tx.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                Ok((free - left).max(0) as usize)
            })?;
        }
        Ok(total)
    }

    fn backlog(&self) -> Result<Backlog, StoreError> {
        let conn = self.read.lock().unwrap();
        let mut m = conn.prepare("SELECT tenant, pipeline, COUNT(*) FROM messages WHERE state = 'accepted' GROUP BY tenant, pipeline")?;
        let messages = m.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?.collect::<Result<_, _>>()?;
        let mut d = conn.prepare("SELECT sink, COUNT(*), MIN(queued_at) FROM deliveries WHERE state = 'pending' GROUP BY sink")?;
        let rows: Vec<(String, i64, i64)> = d.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        let deliveries = rows.iter().map(|(s, n, _)| (s.clone(), *n)).collect();
        let oldest_delivery = rows.into_iter().map(|(s, _, at)| (s, at)).collect();
        let mut e = conn.prepare("SELECT queue, COUNT(*), MIN(at) FROM exceptions WHERE state = 'open' GROUP BY queue")?;
        let exceptions = e.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        let mut l = conn.prepare("SELECT sink, tier, COUNT(*), MIN(queued_at) FROM deliveries WHERE state = 'pending' GROUP BY sink, tier")?;
        let lanes = l.query_map([], |r| Ok((r.get(0)?, Tier::from_index(r.get(1)?), r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
        let mut o = conn.prepare_cached("SELECT tenant, state, COUNT(*) FROM loops WHERE state != 'closed' GROUP BY tenant, state")?;
        let loops = o.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?.collect::<Result<_, _>>()?;
        let mut x = conn.prepare_cached("SELECT tenant, COUNT(*), MIN(at) FROM dead_letters WHERE state = 'open' GROUP BY tenant")?;
        let dead_letters = x.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        Ok(Backlog { messages, deliveries, oldest_delivery, exceptions, lanes, loops, dead_letters })
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let conn = self.read.lock().unwrap();
        let group = |sql: &str| -> rusqlite::Result<std::collections::BTreeMap<String, i64>> {
            let mut stmt = conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            rows.collect()
        };
        Ok(Counts {
            messages: group("SELECT state, COUNT(*) FROM messages GROUP BY state")?,
            deliveries: group("SELECT state, COUNT(*) FROM deliveries GROUP BY state")?,
            dead_letters: conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?,
            exceptions: conn.query_row("SELECT COUNT(*) FROM exceptions", [], |r| r.get(0))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db/s.db"), Sync::Normal, None).unwrap();
        (dir, s)
    }

    #[test]
    fn keeps_the_store_contract() {
        contract::append_dedupes_and_moves_cursors(&store().1);
        contract::a_lease_fences_acks(&store().1);
        contract::a_waiting_message_holds_its_key_only_until_due(&store().1);
        contract::acked_outputs_are_delivered_in_order_per_key(&store().1);
        contract::prune_keeps_dead_letters_and_pending_work(&store().1);
        contract::keeps_state_archive_and_audit(&store().1);
        contract::finds_messages_by_correlation(&store().1);
        contract::closes_loops(&store().1);
        contract::keeps_each_processing_record(&store().1);
        contract::dead_letters_are_listed_replayed_and_purged(&store().1);
        contract::keeps_a_dead_letter_whatever_its_reasons_weigh(&store().1);
        contract::sink_pauses_are_kept_until_resumed(&store().1);
        contract::keeps_rollbacks_until_they_end(&store().1);
        contract::exceptions_are_listed_resolved_retried_and_discarded(&store().1);
        contract::tiers_are_served_in_lanes_keeping_order_per_key(&store().1);
        contract::a_key_keeps_order_within_its_tenant_and_pipeline_only(&store().1);
        contract::queued_deliveries_are_announced_once_durable_in_queue_order(&store().1);
        contract::a_snapshot_is_every_pending_delivery_or_none(&store().1);
        contract::accepted_messages_are_announced_once_durable_and_snapshotted(&store().1);
    }

    #[test]
    fn claims_are_not_compiled_again_when_the_time_moves() {
        let (_d, s) = store();
        s.append(vec![contract::msg("a", None)], None).wait().unwrap();
        let lease = contract::lease_all(&s);
        let sink = s.lease(&Partition { queue: Queue::Deliveries { sink: "erp".into() }, index: 0, of: 1 }, "test", now_ms(), 60_000).unwrap();
        for t in 0..5 {
            s.claim(&lease, 0, now_ms() + t, 10).unwrap();
            s.claim_deliveries(&sink, now_ms() + t, 10).unwrap();
        }
        let conn = s.read.lock().unwrap();
        let mut reprepared = 0;
        // Every statement the claims cached on the read connection.
        for sql in [DELIVERIES_BLOCKED, MESSAGES_BLOCKED] {
            reprepared += conn.prepare_cached(sql).unwrap().get_status(rusqlite::StatementStatus::RePrepare);
        }
        assert_eq!(reprepared, 0, "a claim's statement was compiled again for a new time");
    }

    #[test]
    fn concurrent_writers_share_commits_and_all_land() {
        let (_d, s) = store();
        let s = Arc::new(s);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        s.append(vec![contract::msg(&format!("{t}-{i}"), Some(&format!("k{t}-{i}")))], None).wait().unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let lease = contract::lease_all(s.as_ref());
        assert_eq!(s.claim(&lease, 0, now_ms(), 10_000).unwrap().rows.len(), 1600);
    }

    #[test]
    fn a_failing_job_loses_its_own_writes_only() {
        use std::sync::atomic::AtomicUsize;
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(&dir.path().join("s.db"), Sync::Normal, None).unwrap());
        let mut conn = open(&dir.path().join("s.db"), Sync::Normal, None).unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        // A job's announcement: a delivery to a sink named after the job.
        let announce = |told: &mut Announcements, name: &str| {
            let d = NewDelivery { id: name.into(), sink: name.into(), ordering_key: "k".into(), tier: Tier::Standard, expect_ms: None, json: "{}".into(), message: None };
            told.queued.push(Queued { sink: name.into(), key_hash: 0, delivery: Delivery::queued(0, "acme", "p", &d) });
            told.appended.push(Appended { tenant: "acme".into(), pipeline: name.into(), pending: Pending::default() });
        };
        let cursor = |source: &'static str, runs: Option<Arc<AtomicUsize>>| -> Op {
            Box::new(move |tx, queued| {
                if let Some(r) = &runs {
                    r.fetch_add(1, Ordering::Relaxed);
                }
                tx.execute("INSERT OR REPLACE INTO cursors (source, cursor, at) VALUES (?1, 'c', 0)", params![source])?;
                announce(queued, source);
                Ok(Box::new(()) as Box<dyn Any + Send>)
            })
        };
        // Writes and announces, then fails: neither must survive.
        let broken: Op = Box::new(move |tx, queued| {
            tx.execute("INSERT INTO cursors (source, cursor, at) VALUES ('broken', 'c', 0)", [])?;
            announce(queued, "broken");
            tx.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            Ok(Box::new(()) as Box<dyn Any + Send>)
        });
        let mut ops = vec![cursor("first", Some(runs.clone())), broken, cursor("last", None)];
        let mut told = Announcements::default();
        let results = group(&mut conn, &mut ops, &mut told).unwrap();
        assert_eq!(results.iter().map(Result::is_ok).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(runs.load(Ordering::Relaxed), 2, "run straight through, then job by job");
        let sources = |conn: &Connection| -> Vec<String> {
            conn.prepare("SELECT source FROM cursors ORDER BY source").unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
        };
        assert_eq!(sources(&conn), ["first", "last"]);
        assert_eq!(told.queued.iter().map(|q| q.sink.as_str()).collect::<Vec<_>>(), ["first", "last"], "announced once each, the failed job not at all");
        assert_eq!(told.appended.iter().map(|a| a.pipeline.as_str()).collect::<Vec<_>>(), ["first", "last"]);
        // Alone in its group, the same.
        let broken: Op = Box::new(|tx, _| {
            tx.execute("INSERT INTO cursors (source, cursor, at) VALUES ('alone', 'c', 0)", [])?;
            tx.execute("INSERT INTO no_such_table VALUES (1)", [])?;
            Ok(Box::new(()) as Box<dyn Any + Send>)
        });
        assert!(group(&mut conn, &mut [broken], &mut Announcements::default()).unwrap()[0].is_err());
        assert_eq!(sources(&conn), ["first", "last"]);
    }

    #[test]
    fn the_log_starts_over_under_a_steady_stream_of_commits() {
        // One commit after another, as under load: the checkpointer alone
        // never copies the whole log (frames are added while it copies), so
        // the log would grow by everything written (75 MB or more here).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = SqliteStore::open(&path, Sync::Normal, None).unwrap();
        let chunk = vec![7u8; 48 * 1024];
        // Long enough for the checkpointer to pass several times, however
        // fast the machine.
        let start = std::time::Instant::now();
        let mut i = 0;
        while i < 1600 || start.elapsed() < std::time::Duration::from_secs(1) {
            s.archive(&format!("sha256:{i:064x}"), &chunk).unwrap();
            i += 1;
        }
        let wal = std::fs::metadata(dir.path().join("s.db-wal")).unwrap().len();
        assert!(wal < 48 << 20, "the log grew to {} MiB", wal >> 20);
    }

    #[test]
    fn state_archive_and_leases_outlive_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = SqliteStore::open(&path, Sync::Normal, None).unwrap();
            s.put_state("acme", "counter", vec![("n".into(), Some(b"41".to_vec()))]).wait().unwrap();
            s.archive("sha256:abc", b"\0asm").unwrap();
            s.lease(&contract::partition(), "host-a", now_ms(), 60_000).unwrap();
        }
        let s = SqliteStore::open(&path, Sync::Normal, None).unwrap();
        assert_eq!(s.state().unwrap(), vec![(("acme".into(), "counter".into(), "n".into()), b"41".to_vec())]);
        assert_eq!(s.archived("sha256:abc").unwrap().as_deref(), Some(&b"\0asm"[..]));
        let err = s.lease(&contract::partition(), "host-b", now_ms(), 60_000).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        // The same holder (a restarted host) takes its partition back at once.
        assert_eq!(s.lease(&contract::partition(), "host-a", now_ms(), 60_000).unwrap().token, 1);
    }

    #[test]
    fn ordering_keys_older_versions_scoped_in_the_key_are_plain_again_on_open() {
        use crate::pipeline::fields::key_hash;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(SqliteStore::open(&path, Sync::Normal, None).unwrap());
        // How that version scoped a key: a hash of tenant/pipeline in hex.
        let old = |tenant: &str, pipeline: &str, key: &str| format!("{:08x}/{key}", key_hash(&format!("{tenant}/{pipeline}")));
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            let rows = [
                ("d1", "pending", "p", old("acme", "p", "SKU-1|DC-1")),
                ("d2", "delivered", "p", old("acme", "p", "SKU-1|DC-1")),
                // Not its own scope's prefix: a key that merely looks like one.
                ("d3", "pending", "q", old("acme", "p", "SKU-2|DC-1")),
                ("d4", "pending", "p", "SKU-3|DC-1".to_string()),
                // Scoped by the names, as the version before that wrote it.
                ("d5", "pending", "p", "acme/p/SKU-4|DC-1".to_string()),
            ];
            for (id, state, pipeline, key) in rows {
                conn.execute(
                    "INSERT INTO deliveries (id, source_id, tenant, pipeline, sink, ordering_key, key_hash, state, body, queued_at) VALUES (?1, 's', 'acme', ?3, 'erp', ?4, 7, ?2, '{}', 0)",
                    params![id, state, pipeline, key],
                )
                .unwrap();
            }
        }
        drop(SqliteStore::open(&path, Sync::Normal, None).unwrap());
        let conn = Connection::open(&path).unwrap();
        let rows: Vec<(String, String, u32)> = conn
            .prepare("SELECT id, ordering_key, key_hash FROM deliveries ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plain = "SKU-1|DC-1".to_string();
        assert_eq!(
            rows,
            [
                ("d1".into(), plain.clone(), key_hash(&plain)),
                ("d2".into(), plain.clone(), key_hash(&plain)),
                ("d3".into(), old("acme", "p", "SKU-2|DC-1"), 7),
                ("d4".into(), "SKU-3|DC-1".into(), 7),
                ("d5".into(), "SKU-4|DC-1".into(), key_hash("SKU-4|DC-1"))
            ]
        );
        // Done once: a key written later is left as it is.
        let looks_old = old("acme", "p", "x");
        conn.execute("UPDATE deliveries SET ordering_key = ?1 WHERE id = 'd1'", [&looks_old]).unwrap();
        drop(SqliteStore::open(&path, Sync::Normal, None).unwrap());
        let d1: String = conn.query_row("SELECT ordering_key FROM deliveries WHERE id = 'd1'", [], |r| r.get(0)).unwrap();
        assert_eq!(d1, looks_old);
    }

    #[test]
    fn a_pruned_message_takes_its_trace_along() {
        let (_dir, s) = store();
        contract::keeps_each_processing_record(&s);
        let left: i64 = s.read.lock().unwrap().query_row("SELECT COUNT(*) FROM traces", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_trace_recorded_before_the_traces_table_still_reads() {
        let (_dir, s) = store();
        s.append(vec![contract::msg("old", None)], None).wait().unwrap();
        let old = contract::processing("old", "sha256:abc");
        // How a processed message was kept before: its record as JSON in the row.
        s.read
            .lock()
            .unwrap()
            .execute("UPDATE messages SET state = 'done', processed_at = 1, trace = ?1 WHERE id = 'old'", params![serde_json::to_string(&old).unwrap()])
            .unwrap();
        assert_eq!(s.trace("old").unwrap().unwrap().input.unwrap().processing, Some(old));
    }

    #[test]
    fn prune_hands_pages_back() {
        let (_d, s) = store();
        contract::prune_keeps_dead_letters_and_pending_work(&s);
        let conn = s.read.lock().unwrap();
        let attempts: i64 = conn.query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get(0)).unwrap();
        assert_eq!(attempts, 0, "the pruned delivery's attempts went with it");
        let vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
        assert_eq!(vacuum, 2, "a new store hands pruned pages back (incremental)");
    }

    #[test]
    fn a_full_store_says_so_by_its_kind() {
        let d = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&d.path().join("s.db"), Sync::Normal, Some(256 << 10)).unwrap();
        let big = |i: usize| NewMessage { json: "x".repeat(64 << 10), ..contract::msg(&format!("m{i}"), None) };
        let err = (0..64).find_map(|i| s.append(vec![big(i)], None).wait().err()).expect("the cap is reached");
        assert!(matches!(err, StoreError::Full(_)), "{err:?}");
        assert!(err.is_transient());
        assert!(err.to_string().starts_with("the store is full: commit failed: "), "{err}");
    }
}

