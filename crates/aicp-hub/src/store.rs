//! Durable hub state behind a small trait: shared context, messages until they
//! expire (marked read, not deleted, when a session reads them), and the agents seen. The default is SQLite (bundled, WAL) in the
//! data dir; a Redis-backed store for several hub replicas would implement the
//! same trait. Every write is one transaction: a write that fails (disk full,
//! read-only, a limit) returns an error and leaves what was stored untouched.
//! Values are stored as JSON text and returned as JSON values, never as
//! JSON-in-a-string.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Map, Value};

use aicp_proto::aixp::Envelope;

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "hub.sqlite3";

/// Longest shared-context key, in bytes: keys become resource URIs and log fields.
pub const MAX_KEY_BYTES: usize = 256;

/// Sizes the store refuses to exceed; each error says the number.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Largest shared-context value, as JSON bytes.
    pub max_value_bytes: usize,
    /// Most shared-context keys.
    pub max_keys: usize,
    /// Most unread messages one recipient may hold (a flood cannot fill the disk).
    pub max_inbox: usize,
    /// Largest database file; SQLite reports "full" beyond it.
    pub max_db_bytes: u64,
    /// Bytes of shared context (keys plus JSON values) one identity may have
    /// written, counting the keys it wrote last: one user cannot fill the store.
    pub max_context_bytes_per_identity: u64,
    /// Shared-context keys one identity may have written last (of `max_keys` in all).
    pub max_keys_per_identity: usize,
    /// Bytes of unread, unexpired message text one sender may have waiting in
    /// all inboxes together: a flood from one user cannot fill the store.
    pub max_pending_bytes_per_sender: u64,
}

impl Default for StoreLimits {
    fn default() -> StoreLimits {
        StoreLimits {
            max_value_bytes: 64 * 1024,
            max_keys: 10_000,
            max_inbox: 1_000,
            max_db_bytes: 1 << 30,
            max_context_bytes_per_identity: 16 << 20,
            max_keys_per_identity: 1_000,
            max_pending_bytes_per_sender: 32 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("value is {len} bytes of JSON; the hub stores at most {max} per key")]
    ValueTooLarge { len: usize, max: usize },
    #[error("shared state already holds {max} keys, the hub's limit")]
    TooManyKeys { max: usize },
    #[error("{recipient}'s inbox already holds {max} unread messages, the hub's limit")]
    InboxFull { recipient: String, max: usize },
    #[error(
        "the store is full ({max_bytes} bytes, the hub's limit, or the disk): nothing was written"
    )]
    Full { max_bytes: u64 },
    #[error("store write failed, nothing was written: {0}")]
    Write(rusqlite::Error),
    #[error("store read failed: {0}")]
    Read(rusqlite::Error),
    #[error("the key is {len} bytes; the hub allows at most {max}")]
    KeyTooLong { len: usize, max: usize },
    #[error(
        "{identity}'s shared context would be {would_be} bytes (keys and values it wrote); the hub keeps at most {max} per identity: delete keys with delete_context"
    )]
    ContextQuota {
        identity: String,
        would_be: u64,
        max: u64,
    },
    #[error(
        "{identity} already wrote {max} shared-context keys, the hub's limit per identity: delete keys with delete_context"
    )]
    KeyQuota { identity: String, max: usize },
    #[error(
        "context_key {key:?} is at version {current} (0: it does not exist), not the if_version {expected} you passed: nothing was written; re-read it with get_context and retry with if_version {current}"
    )]
    VersionMismatch {
        key: String,
        expected: u64,
        current: u64,
    },
    #[error(
        "{sender}'s unread messages would be {would_be} bytes; the hub keeps at most {max} bytes of unread messages per sender until they are read or expire"
    )]
    PendingQuota {
        sender: String,
        would_be: u64,
        max: u64,
    },
}

/// One stored message with its envelope. `seq` orders a recipient's inbox and is its read cursor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub seq: u64,
    pub id: String,
    pub from: String,
    pub to: String,
    pub text: String,
    pub reply_to: Option<String>,
    /// Unix milliseconds.
    pub created_at: u64,
    pub aixp: Envelope,
    /// When a session first read it (unix milliseconds); None while unread.
    pub read_at: Option<u64>,
    /// Which session read it, as a label a person recognises ("connection 7 (Claude Desktop)").
    pub read_by: Option<String>,
}

/// What one inbox read asks for. Every list is bounded by `max_messages` and
/// `max_bytes` of message JSON on its own, and holds at least one message when
/// there is any, so a reader always makes progress.
#[derive(Debug, Clone, Copy)]
pub struct InboxRead<'a> {
    pub recipient: &'a str,
    /// The reading session's label: what it is returned is marked read by it.
    /// None is a peek: nothing is marked.
    pub mark_as: Option<&'a str>,
    /// Also return the most recently read messages (read before this call).
    pub include_read: bool,
    /// Report messages above this seq that sessions other than the named one
    /// read (the caller's "last looked" cursor and its own label).
    pub read_elsewhere_after: Option<(u64, &'a str)>,
    pub now_ms: u64,
    pub max_messages: usize,
    pub max_bytes: usize,
}

/// One page of a recipient's inbox.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InboxPage {
    /// Unread, unexpired messages, oldest first; marked read by this call unless it peeked.
    pub messages: Vec<Message>,
    /// Unread, unexpired messages after this page (0 when the page holds them all).
    pub pending: u64,
    /// With `include_read`: the most recently read messages, oldest first.
    pub read: Vec<Message>,
    /// Messages after the cursor read by another session, oldest first.
    pub read_elsewhere: Vec<Message>,
    /// More such messages than fit in `read_elsewhere`.
    pub read_elsewhere_more: bool,
}

/// One shared-context key as `get_context` and `list_context` describe it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateEntry {
    pub key: String,
    /// The JSON value; `Null` in listings, which carry only `size`.
    pub value: Value,
    /// 1 when created, +1 on every write.
    pub version: u64,
    pub updated_by: String,
    /// Unix milliseconds.
    pub updated_at: u64,
    /// Bytes of the value's JSON.
    pub size: u64,
}

/// One subtask of a stored plan, with its answer once one came.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanSubtask {
    /// 1-based, as the plan lists it.
    pub index: u32,
    pub description: String,
    pub assignee: Option<String>,
    pub message_id: Option<String>,
    /// The first message whose `reply_to` is `message_id`.
    pub answer: Option<PlanAnswer>,
}

/// An answer to a plan's subtask.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanAnswer {
    pub message_id: String,
    pub from: String,
    pub text: String,
    /// Unix milliseconds.
    pub sent_at: u64,
}

/// A plan `orchestrate_collaboration` delivered, kept for `plan_status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub plan_id: String,
    pub owner: String,
    pub task: String,
    /// Unix milliseconds.
    pub created_at: u64,
    pub subtasks: Vec<PlanSubtask>,
}

/// How long a plan (and the answers recorded for it) is kept for `plan_status`.
pub const PLAN_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

/// An agent the hub has seen connect, kept across restarts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRecord {
    pub identity: String,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub capabilities: Vec<String>,
    pub last_seen: u64,
}

/// What the hub needs from its store. Synchronous: the SQLite implementation
/// answers in microseconds and callers run it off the async threads
/// (`spawn_blocking`); a networked store would add an async twin.
pub trait Store: Send + Sync + 'static {
    fn put_state(&self, key: &str, value: &Value, by: &str, now_ms: u64) -> Result<(), StoreError> {
        self.put_state_if(key, value, by, now_ms, None).map(drop)
    }
    /// Writes a key when `if_version` is None or the key's current version
    /// (0 when absent); returns the new version (1 on create, +1 on each write).
    /// The check and the write are one transaction.
    fn put_state_if(
        &self,
        key: &str,
        value: &Value,
        by: &str,
        now_ms: u64,
        if_version: Option<u64>,
    ) -> Result<u64, StoreError>;
    /// A key with its value and version.
    fn get_state_entry(&self, key: &str) -> Result<Option<StateEntry>, StoreError>;
    /// Keys starting with `prefix` and after `after`, in key order, at most
    /// `limit` (values left `Null`); the bool says whether more follow.
    fn list_state(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<StateEntry>, bool), StoreError>;
    /// Whether a message with this id was stored and has not expired (read or
    /// not), or is a stored plan's subtask: what a `reply_to` may name.
    fn message_known(&self, id: &str, now_ms: u64) -> Result<bool, StoreError>;
    /// Stores a delivered plan; answers already sent to its subtasks are recorded at once.
    fn put_plan(&self, plan: &Plan) -> Result<(), StoreError>;
    /// A stored plan with the answers recorded so far.
    fn get_plan(&self, plan_id: &str) -> Result<Option<Plan>, StoreError>;
    fn get_state(&self, key: &str) -> Result<Option<Value>, StoreError>;
    fn snapshot(&self) -> Result<Map<String, Value>, StoreError>;
    /// Stores a message; returns its sequence number.
    fn push_message(&self, msg: &Message) -> Result<u64, StoreError>;
    /// An unexpired message by id (to continue a thread).
    fn get_message(&self, id: &str, now_ms: u64) -> Result<Option<Message>, StoreError>;
    /// The last `limit` unexpired messages `recipient` received, read or
    /// not, oldest first (to recognise forwards of them).
    fn recent_received(
        &self,
        recipient: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;
    /// Up to `limit` unread, unexpired messages after seq `after`, oldest
    /// first, without marking them: a peek.
    fn read_inbox(
        &self,
        recipient: &str,
        after: u64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;
    /// Deletes expired messages; returns how many.
    fn purge_expired(&self, now_ms: u64) -> Result<usize, StoreError>;
    fn agent_seen(&self, agent: &AgentRecord) -> Result<(), StoreError>;
    fn agents_seen(&self) -> Result<Vec<AgentRecord>, StoreError>;
    /// One agent's record, if it was ever seen.
    fn agent(&self, identity: &str) -> Result<Option<AgentRecord>, StoreError>;
    /// Moves a known agent's `last_seen` to `now_ms` (a session joined or left); unknown ones are not added.
    fn agent_touched(&self, identity: &str, now_ms: u64) -> Result<(), StoreError>;
    /// The highest message seq ever stored for `recipient` (0 when none):
    /// where a new session's "last looked" cursor starts.
    fn last_seq(&self, recipient: &str) -> Result<u64, StoreError>;
    /// Bytes the store occupies (for /metrics).
    fn size_bytes(&self) -> u64;
    /// Flushes the write-ahead log into the database; called once at shutdown.
    fn close(&self) -> Result<(), StoreError>;
    /// One read of `q.recipient`'s inbox, in one transaction: the oldest
    /// unread messages (up to the bounds, always at least one), marked read by
    /// `q.mark_as` unless it is None; two readers never both get a message as
    /// unread. With the lists `q` asks for (see [`InboxRead`]).
    fn inbox_page(&self, q: &InboxRead<'_>) -> Result<InboxPage, StoreError>;
    /// Deletes a shared-context key; false when there was none.
    fn delete_state(&self, key: &str) -> Result<bool, StoreError>;
    /// `hub revoke`: tokens for `subject` issued before `not_before` (unix seconds) are
    /// refused from now on. A later revocation moves the time forward, never back.
    fn revoke_subject(&self, subject: &str, not_before: u64) -> Result<(), StoreError>;
    /// The subject's revocation time, if it was ever revoked.
    fn subject_not_before(&self, subject: &str) -> Result<Option<u64>, StoreError>;
}

pub struct SqliteStore {
    /// One connection: SQLite serialises writers anyway, and a mutex held for
    /// microseconds is cheaper than a pool.
    conn: Mutex<Connection>,
    limits: StoreLimits,
    /// Moves WAL checkpoints (and their fsync) off the write path; None for a store without a file.
    checkpointer: Mutex<Option<Checkpointer>>,
}

/// How often the background thread folds the write-ahead log into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A thread with its own connection running passive checkpoints, so a commit
/// never waits for one (SQLite's default runs them inside the committing call).
struct Checkpointer {
    /// Sending (or dropping it) stops the thread.
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: &Path) -> rusqlite::Result<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hub-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(CHECKPOINT_EVERY)
                {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "background checkpoint failed");
                    }
                }
            })
            .expect("spawning a thread");
        Ok(Checkpointer { stop, thread })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some(c) = self.checkpointer.get_mut().ok().and_then(Option::take) {
            c.stop();
        }
    }
}

/// Tables first; the added columns, then [`TRIGGERS`], once the columns they name exist.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS shared_state (
  key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_by TEXT NOT NULL, updated_at INTEGER NOT NULL,
  version INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, sender TEXT NOT NULL,
  recipient TEXT NOT NULL, text TEXT NOT NULL, reply_to TEXT, created_at INTEGER NOT NULL,
  hops INTEGER NOT NULL, origin TEXT NOT NULL, expires_at INTEGER NOT NULL,
  read_at INTEGER, read_by TEXT, turns INTEGER NOT NULL DEFAULT 0, trail TEXT,
  started_at INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS messages_inbox ON messages(recipient, seq);
CREATE INDEX IF NOT EXISTS messages_expiry ON messages(expires_at);
DROP INDEX IF EXISTS messages_sender;
DROP INDEX IF EXISTS shared_state_writer;
DROP TABLE IF EXISTS inbox_delivered;
CREATE TABLE IF NOT EXISTS agents (
  identity TEXT PRIMARY KEY, client_name TEXT, client_version TEXT, capabilities TEXT NOT NULL,
  last_seen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_subjects (
  subject TEXT PRIMARY KEY, not_before INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS context_usage (
  identity TEXT PRIMARY KEY, bytes INTEGER NOT NULL, keys INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending_usage (
  sender TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inbox_usage (
  recipient TEXT PRIMARY KEY, unread INTEGER NOT NULL);
";

/// Columns added since the first release, for databases created before them:
/// (column, its declaration). Added when `PRAGMA table_info` lacks them.
const MESSAGE_COLUMNS_ADDED: &[(&str, &str)] = &[
    ("read_at", "read_at INTEGER"),
    ("read_by", "read_by TEXT"),
    ("turns", "turns INTEGER NOT NULL DEFAULT 0"),
    ("trail", "trail TEXT"),
    ("started_at", "started_at INTEGER NOT NULL DEFAULT 0"),
];

/// Indexes and triggers, created once the columns they name exist.
/// `pending_usage` counts only unread messages: marking one read releases its
/// sender's quota, and deleting a read one (expiry) changes nothing.
const TRIGGERS: &str = "
CREATE INDEX IF NOT EXISTS messages_unread ON messages(recipient, seq) WHERE read_at IS NULL;
CREATE TABLE IF NOT EXISTS context_tombstones (
  key TEXT PRIMARY KEY, version INTEGER NOT NULL, deleted_at INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS context_tombstone AFTER DELETE ON shared_state BEGIN
  INSERT INTO context_tombstones (key, version, deleted_at)
    VALUES (OLD.key, OLD.version, CAST(strftime('%s', 'now') AS INTEGER) * 1000)
    ON CONFLICT(key) DO UPDATE SET version = excluded.version, deleted_at = excluded.deleted_at;
END;
CREATE TRIGGER IF NOT EXISTS context_usage_insert AFTER INSERT ON shared_state BEGIN
  INSERT INTO context_usage SELECT NEW.updated_by, 0, 0
    WHERE NOT EXISTS (SELECT 1 FROM context_usage WHERE identity = NEW.updated_by);
  UPDATE context_usage SET bytes = bytes + octet_length(NEW.key) + octet_length(NEW.value), keys = keys + 1
    WHERE identity = NEW.updated_by;
END;
CREATE TRIGGER IF NOT EXISTS context_usage_delete AFTER DELETE ON shared_state BEGIN
  UPDATE context_usage SET bytes = bytes - octet_length(OLD.key) - octet_length(OLD.value), keys = keys - 1
    WHERE identity = OLD.updated_by;
END;
DROP TRIGGER IF EXISTS context_usage_update;
CREATE TRIGGER IF NOT EXISTS context_usage_rewrite AFTER UPDATE ON shared_state
  WHEN OLD.updated_by = NEW.updated_by BEGIN
  UPDATE context_usage SET bytes = bytes + octet_length(NEW.value) - octet_length(OLD.value)
    WHERE identity = NEW.updated_by;
END;
CREATE TRIGGER IF NOT EXISTS context_usage_takeover AFTER UPDATE ON shared_state
  WHEN OLD.updated_by <> NEW.updated_by BEGIN
  UPDATE context_usage SET bytes = bytes - octet_length(OLD.key) - octet_length(OLD.value), keys = keys - 1
    WHERE identity = OLD.updated_by;
  INSERT INTO context_usage SELECT NEW.updated_by, 0, 0
    WHERE NOT EXISTS (SELECT 1 FROM context_usage WHERE identity = NEW.updated_by);
  UPDATE context_usage SET bytes = bytes + octet_length(NEW.key) + octet_length(NEW.value), keys = keys + 1
    WHERE identity = NEW.updated_by;
END;
CREATE TABLE IF NOT EXISTS plans (
  plan_id TEXT PRIMARY KEY, owner TEXT NOT NULL, task TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS plan_subtasks (
  plan_id TEXT NOT NULL, idx INTEGER NOT NULL, owner TEXT NOT NULL, description TEXT NOT NULL,
  assignee TEXT, message_id TEXT, created_at INTEGER NOT NULL,
  answer_id TEXT, answer_from TEXT, answer_text TEXT, answered_at INTEGER,
  PRIMARY KEY (plan_id, idx));
CREATE INDEX IF NOT EXISTS plan_subtasks_message ON plan_subtasks(message_id);
CREATE TRIGGER IF NOT EXISTS plan_answer AFTER INSERT ON messages WHEN NEW.reply_to IS NOT NULL BEGIN
  UPDATE plan_subtasks SET answer_id = NEW.id, answer_from = NEW.sender, answer_text = NEW.text,
    answered_at = NEW.created_at
    WHERE message_id = NEW.reply_to AND answer_id IS NULL;
END;
CREATE TRIGGER IF NOT EXISTS pending_usage_insert AFTER INSERT ON messages BEGIN
  INSERT INTO pending_usage SELECT NEW.sender, 0
    WHERE NOT EXISTS (SELECT 1 FROM pending_usage WHERE sender = NEW.sender);
  UPDATE pending_usage SET bytes = bytes + octet_length(NEW.text) WHERE sender = NEW.sender;
END;
DROP TRIGGER IF EXISTS pending_usage_delete;
CREATE TRIGGER IF NOT EXISTS pending_usage_delete_unread AFTER DELETE ON messages
  WHEN OLD.read_at IS NULL BEGIN
  UPDATE pending_usage SET bytes = bytes - octet_length(OLD.text) WHERE sender = OLD.sender;
END;
CREATE TRIGGER IF NOT EXISTS pending_usage_read AFTER UPDATE OF read_at ON messages
  WHEN OLD.read_at IS NULL AND NEW.read_at IS NOT NULL BEGIN
  UPDATE pending_usage SET bytes = bytes - octet_length(OLD.text) WHERE sender = OLD.sender;
END;
CREATE TRIGGER IF NOT EXISTS inbox_usage_insert AFTER INSERT ON messages BEGIN
  INSERT INTO inbox_usage VALUES (NEW.recipient, 1)
    ON CONFLICT(recipient) DO UPDATE SET unread = unread + 1;
END;
CREATE TRIGGER IF NOT EXISTS inbox_usage_read AFTER UPDATE OF read_at ON messages
  WHEN OLD.read_at IS NULL AND NEW.read_at IS NOT NULL BEGIN
  UPDATE inbox_usage SET unread = unread - 1 WHERE recipient = OLD.recipient;
END;
CREATE TRIGGER IF NOT EXISTS inbox_usage_delete_unread AFTER DELETE ON messages
  WHEN OLD.read_at IS NULL BEGIN
  UPDATE inbox_usage SET unread = unread - 1 WHERE recipient = OLD.recipient;
END;
";

/// Recounts the usage tables from the rows themselves, once at open: a store
/// written before the triggers existed (or by hand) starts from the truth.
const RECOUNT_USAGE: &str = "
DELETE FROM context_usage;
INSERT INTO context_usage SELECT updated_by, sum(octet_length(key) + octet_length(value)), count(*)
  FROM shared_state GROUP BY updated_by;
DELETE FROM pending_usage;
INSERT INTO pending_usage SELECT sender, sum(octet_length(text)) FROM messages
  WHERE read_at IS NULL GROUP BY sender;
DELETE FROM inbox_usage;
INSERT INTO inbox_usage SELECT recipient, count(*) FROM messages
  WHERE read_at IS NULL GROUP BY recipient;
";

impl SqliteStore {
    pub fn open(dir: &Path, limits: StoreLimits) -> anyhow::Result<SqliteStore> {
        use anyhow::Context;
        create_private_dir(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
        let path = dir.join(DB_FILE);
        create_private_files(&path)
            .with_context(|| format!("making {} private (mode 0600)", path.display()))?;
        let conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let store = SqliteStore::with_connection(conn, limits)
            .with_context(|| format!("preparing {}", path.display()))?;
        store.lock().pragma_update(None, "wal_autocheckpoint", 0)?;
        *store.checkpointer.lock().unwrap() = Some(
            Checkpointer::start(&path)
                .with_context(|| format!("opening {} for checkpoints", path.display()))?,
        );
        Ok(store)
    }

    pub fn with_connection(conn: Connection, limits: StoreLimits) -> rusqlite::Result<SqliteStore> {
        // WAL: readers never block the writer. synchronous=NORMAL: a commit
        // survives a crash of the hub; a power cut may lose the last few.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // The schema first: the size limit is for what clients write, not for the tables.
        conn.execute_batch(SCHEMA)?;
        add_missing_columns(&conn, "messages", MESSAGE_COLUMNS_ADDED)?;
        add_missing_columns(
            &conn,
            "shared_state",
            &[("version", "version INTEGER NOT NULL DEFAULT 1")],
        )?;
        conn.execute_batch(TRIGGERS)?;
        conn.execute_batch(&format!("BEGIN; {RECOUNT_USAGE} COMMIT;"))?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let max_pages =
            (limits.max_db_bytes / page_size.max(512) as u64).clamp(16, i64::MAX as u64) as i64;
        conn.pragma_update(None, "max_page_count", max_pages)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            limits,
            checkpointer: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-written row (transactions), so poison is harmless.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_err(&self, e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full {
                max_bytes: self.limits.max_db_bytes,
            },
            _ => StoreError::Write(e),
        }
    }
}

/// Adds the columns `table` lacks (a database from an older hub); adding
/// nothing when they are there makes it safe to run at every open.
fn add_missing_columns(
    conn: &Connection,
    table: &str,
    columns: &[(&str, &str)],
) -> rusqlite::Result<()> {
    let have: Vec<String> = conn
        .prepare(&format!("PRAGMA table_info({table})"))?
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<Result<_, _>>()?;
    for (name, decl) in columns {
        if !have.iter().any(|h| h == name) {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {decl}"))?;
        }
    }
    Ok(())
}

/// Creates the data dir readable by its owner only: it holds messages and the JWT secret.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Creates the database file readable by its owner only (0600) before SQLite
/// opens it, whatever the directory's mode or the umask: it holds messages and
/// shared state. SQLite gives the `-wal` and `-shm` files it creates the
/// database file's mode, so this covers them; files an older hub left with the
/// umask's mode are narrowed here.
fn create_private_files(db: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db)?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
    Ok(())
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let id: String = r.get(1)?;
    Ok(Message {
        seq: r.get::<_, i64>(0)? as u64,
        from: r.get(2)?,
        to: r.get(3)?,
        text: r.get(4)?,
        reply_to: r.get(5)?,
        created_at: r.get::<_, i64>(6)? as u64,
        aixp: Envelope {
            version: aicp_proto::aixp::AIXP_VERSION.into(),
            id: id.clone(),
            hops: r.get(7)?,
            turns: r.get(12)?,
            origin: r.get(8)?,
            expires_at: r.get::<_, i64>(9)? as u64,
            trail: r
                .get::<_, Option<String>>(13)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
            started_at: r.get::<_, i64>(14)? as u64,
        },
        read_at: r.get::<_, Option<i64>>(10)?.map(|t| t.max(0) as u64),
        read_by: r.get(11)?,
        id,
    })
}

fn row_to_agent(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRecord> {
    let caps: String = r.get(3)?;
    Ok(AgentRecord {
        identity: r.get(0)?,
        client_name: r.get(1)?,
        client_version: r.get(2)?,
        capabilities: serde_json::from_str(&caps).unwrap_or_default(),
        last_seen: r.get::<_, i64>(4)? as u64,
    })
}

/// Room a result takes per message beyond its stored fields: three ISO 8601
/// times with their keys and a `read_by` label ("connection N (client)", the
/// client name cut to 64 characters).
const MESSAGE_VIEW_ALLOWANCE: usize = 256;

/// A message's size as the JSON a page carries it in (what paging by bytes
/// counts): its fields, plus [`MESSAGE_VIEW_ALLOWANCE`] for what results add.
pub fn message_json_bytes(m: &Message) -> usize {
    serde_json::to_vec(m).map_or(0, |v| v.len()) + MESSAGE_VIEW_ALLOWANCE
}

const MESSAGE_COLUMNS: &str = "seq, id, sender, recipient, text, reply_to, created_at, hops, origin, expires_at, read_at, read_by, turns, trail, started_at";

/// The messages `condition` (a WHERE clause with its ORDER BY and LIMIT)
/// selects, bounded by [`bounded_messages`]; true when a row was left over.
fn select_messages(
    tx: &rusqlite::Transaction<'_>,
    condition: &str,
    params: impl rusqlite::Params,
    max_bytes: usize,
) -> Result<(Vec<Message>, bool), StoreError> {
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE {condition}"
        ))
        .map_err(StoreError::Read)?;
    let mut rows = stmt.query(params).map_err(StoreError::Read)?;
    bounded_messages(&mut rows, max_bytes)
}

/// Collects messages from `rows` until `max_bytes` of their JSON (always at
/// least one); true when a row was left over.
fn bounded_messages(
    rows: &mut rusqlite::Rows<'_>,
    max_bytes: usize,
) -> Result<(Vec<Message>, bool), StoreError> {
    let mut messages = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next().map_err(StoreError::Read)? {
        let m = row_to_message(row).map_err(StoreError::Read)?;
        let len = message_json_bytes(&m);
        if !messages.is_empty() && bytes.saturating_add(len) > max_bytes {
            return Ok((messages, true));
        }
        bytes = bytes.saturating_add(len);
        messages.push(m);
    }
    Ok((messages, false))
}

impl Store for SqliteStore {
    fn put_state_if(
        &self,
        key: &str,
        value: &Value,
        by: &str,
        now_ms: u64,
        if_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(StoreError::KeyTooLong {
                len: key.len(),
                max: MAX_KEY_BYTES,
            });
        }
        let text = value.to_string();
        if text.len() > self.limits.max_value_bytes {
            return Err(StoreError::ValueTooLarge {
                len: text.len(),
                max: self.limits.max_value_bytes,
            });
        }
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.write_err(e))?;
        // The key being replaced, if any: who wrote it, what it counts for, its version.
        let old: Option<(String, i64, i64)> = tx
            .prepare_cached(
                "SELECT updated_by, octet_length(key) + octet_length(value), version FROM shared_state WHERE key = ?1",
            )
            .and_then(|mut s| {
                s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(StoreError::Read)?;
        let current = old.as_ref().map_or(0, |o| o.2.max(0) as u64);
        if let Some(expected) = if_version.filter(|&v| v != current) {
            return Err(StoreError::VersionMismatch {
                key: key.to_owned(),
                expected,
                current,
            });
        }
        // Usage comes from the counters the triggers keep (O(1)), not from summing rows.
        if old.is_none() {
            let n: i64 = tx
                .prepare_cached("SELECT coalesce(sum(keys), 0) FROM context_usage")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(StoreError::Read)?;
            if n as usize >= self.limits.max_keys {
                return Err(StoreError::TooManyKeys {
                    max: self.limits.max_keys,
                });
            }
        }
        let (bytes, keys): (i64, i64) = tx
            .prepare_cached("SELECT bytes, keys FROM context_usage WHERE identity = ?1")
            .and_then(|mut s| s.query_row([by], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(StoreError::Read)?
            .unwrap_or((0, 0));
        // The writer's own share, not counting the key being replaced (its new size is added below).
        let (mine_bytes, mine_keys) = match &old {
            Some((writer, len, _)) if writer == by => (bytes - len, keys - 1),
            _ => (bytes, keys),
        };
        if mine_keys as usize >= self.limits.max_keys_per_identity {
            return Err(StoreError::KeyQuota {
                identity: by.to_owned(),
                max: self.limits.max_keys_per_identity,
            });
        }
        let would_be = mine_bytes.max(0) as u64 + (key.len() + text.len()) as u64;
        if would_be > self.limits.max_context_bytes_per_identity {
            return Err(StoreError::ContextQuota {
                identity: by.to_owned(),
                would_be,
                max: self.limits.max_context_bytes_per_identity,
            });
        }
        // A key created again after a delete goes on from the version it was
        // deleted at, so an if_version read before the delete cannot match the new key.
        let base = if old.is_some() {
            current
        } else {
            tx.prepare_cached("SELECT version FROM context_tombstones WHERE key = ?1")
                .and_then(|mut s| s.query_row([key], |r| r.get::<_, i64>(0)).optional())
                .map_err(StoreError::Read)?
                .map_or(0, |v| v.max(0) as u64)
        };
        let version = base + 1;
        tx.execute(
            "INSERT INTO shared_state (key, value, updated_by, updated_at, version) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by,
               updated_at = excluded.updated_at, version = excluded.version",
            params![key, text, by, now_ms as i64, version as i64],
        )
        .and_then(|_| tx.execute("DELETE FROM context_tombstones WHERE key = ?1", [key]))
        .map_err(|e| self.write_err(e))?;
        tx.commit().map_err(|e| self.write_err(e))?;
        Ok(version)
    }

    fn get_state_entry(&self, key: &str) -> Result<Option<StateEntry>, StoreError> {
        self.lock()
            .prepare_cached(
                "SELECT key, value, version, updated_by, updated_at FROM shared_state WHERE key = ?1",
            )
            .and_then(|mut s| {
                s.query_row([key], |r| {
                    let text: String = r.get(1)?;
                    Ok(StateEntry {
                        key: r.get(0)?,
                        size: text.len() as u64,
                        value: serde_json::from_str(&text).unwrap_or(Value::String(text)),
                        version: r.get::<_, i64>(2)?.max(0) as u64,
                        updated_by: r.get(3)?,
                        updated_at: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                })
                .optional()
            })
            .map_err(StoreError::Read)
    }

    fn list_state(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<StateEntry>, bool), StoreError> {
        let conn = self.lock();
        // substr counts characters on both sides, so a prefix cut mid-character matches nothing.
        let mut stmt = conn
            .prepare_cached(
                "SELECT key, octet_length(value), version, updated_by, updated_at FROM shared_state
                 WHERE substr(key, 1, length(?1)) = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
            )
            .map_err(StoreError::Read)?;
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let mut entries = stmt
            .query_map(params![prefix, after.unwrap_or(""), fetch], |r| {
                Ok(StateEntry {
                    key: r.get(0)?,
                    value: Value::Null,
                    size: r.get::<_, i64>(1)?.max(0) as u64,
                    version: r.get::<_, i64>(2)?.max(0) as u64,
                    updated_by: r.get(3)?,
                    updated_at: r.get::<_, i64>(4)?.max(0) as u64,
                })
            })
            .map_err(StoreError::Read)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::Read)?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        Ok((entries, more))
    }

    fn message_known(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        self.lock()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?1 AND expires_at > ?2)
                     OR EXISTS (SELECT 1 FROM plan_subtasks WHERE message_id = ?1)",
            )
            .and_then(|mut s| s.query_row(params![id, now_ms as i64], |r| r.get(0)))
            .map_err(StoreError::Read)
    }

    fn put_plan(&self, plan: &Plan) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.write_err(e))?;
        tx.execute(
            "INSERT INTO plans (plan_id, owner, task, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![plan.plan_id, plan.owner, plan.task, plan.created_at as i64],
        )
        .map_err(|e| self.write_err(e))?;
        for st in &plan.subtasks {
            tx.prepare_cached(
                "INSERT INTO plan_subtasks (plan_id, idx, owner, description, assignee, message_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    plan.plan_id,
                    st.index,
                    plan.owner,
                    st.description,
                    st.assignee,
                    st.message_id,
                    plan.created_at as i64
                ])
            })
            .map_err(|e| self.write_err(e))?;
        }
        // An answer may have come between delivering a subtask and storing the plan.
        tx.execute(
            "UPDATE plan_subtasks SET (answer_id, answer_from, answer_text, answered_at) =
               (SELECT id, sender, text, created_at FROM messages WHERE reply_to = plan_subtasks.message_id ORDER BY seq LIMIT 1)
             WHERE plan_id = ?1 AND answer_id IS NULL
               AND EXISTS (SELECT 1 FROM messages WHERE reply_to = plan_subtasks.message_id)",
            [&plan.plan_id],
        )
        .map_err(|e| self.write_err(e))?;
        tx.commit().map_err(|e| self.write_err(e))
    }

    fn get_plan(&self, plan_id: &str) -> Result<Option<Plan>, StoreError> {
        let conn = self.lock();
        let head: Option<(String, String, i64)> = conn
            .prepare_cached("SELECT owner, task, created_at FROM plans WHERE plan_id = ?1")
            .and_then(|mut s| {
                s.query_row([plan_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(StoreError::Read)?;
        let Some((owner, task, created_at)) = head else {
            return Ok(None);
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT idx, description, assignee, message_id, answer_id, answer_from, answer_text, answered_at
                 FROM plan_subtasks WHERE plan_id = ?1 ORDER BY idx",
            )
            .map_err(StoreError::Read)?;
        let subtasks = stmt
            .query_map([plan_id], |r| {
                let answer = match r.get::<_, Option<String>>(4)? {
                    Some(message_id) => Some(PlanAnswer {
                        message_id,
                        from: r.get(5)?,
                        text: r.get(6)?,
                        sent_at: r.get::<_, i64>(7)?.max(0) as u64,
                    }),
                    None => None,
                };
                Ok(PlanSubtask {
                    index: r.get(0)?,
                    description: r.get(1)?,
                    assignee: r.get(2)?,
                    message_id: r.get(3)?,
                    answer,
                })
            })
            .map_err(StoreError::Read)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::Read)?;
        Ok(Some(Plan {
            plan_id: plan_id.to_owned(),
            owner,
            task,
            created_at: created_at.max(0) as u64,
            subtasks,
        }))
    }

    fn get_state(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let conn = self.lock();
        let text: Option<String> = conn
            .prepare_cached("SELECT value FROM shared_state WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(StoreError::Read)?;
        Ok(text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t))))
    }

    fn snapshot(&self) -> Result<Map<String, Value>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT key, value FROM shared_state ORDER BY key")
            .map_err(StoreError::Read)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(StoreError::Read)?;
        let mut map = Map::new();
        for row in rows {
            let (k, v) = row.map_err(StoreError::Read)?;
            map.insert(k, serde_json::from_str(&v).unwrap_or(Value::String(v)));
        }
        Ok(map)
    }

    fn push_message(&self, m: &Message) -> Result<u64, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.write_err(e))?;
        // Unread messages come from the counter the triggers keep (O(1), not a
        // scan of the inbox); expired ones count until the purge (every minute) removes them.
        let n: i64 = tx
            .prepare_cached("SELECT unread FROM inbox_usage WHERE recipient = ?1")
            .and_then(|mut s| s.query_row([&m.to], |r| r.get(0)).optional())
            .map_err(StoreError::Read)?
            .unwrap_or(0);
        if n as usize >= self.limits.max_inbox {
            return Err(StoreError::InboxFull {
                recipient: m.to.clone(),
                max: self.limits.max_inbox,
            });
        }
        // Kept by triggers on insert, read and delete; expired unread messages
        // count until the purge (every minute) removes them.
        let pending: i64 = tx
            .prepare_cached("SELECT bytes FROM pending_usage WHERE sender = ?1")
            .and_then(|mut s| s.query_row([&m.from], |r| r.get(0)).optional())
            .map_err(StoreError::Read)?
            .unwrap_or(0);
        let would_be = pending.max(0) as u64 + m.text.len() as u64;
        if would_be > self.limits.max_pending_bytes_per_sender {
            return Err(StoreError::PendingQuota {
                sender: m.from.clone(),
                would_be,
                max: self.limits.max_pending_bytes_per_sender,
            });
        }
        tx.execute(
            "INSERT INTO messages (id, sender, recipient, text, reply_to, created_at, hops, origin, expires_at, turns, trail, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![m.id, m.from, m.to, m.text, m.reply_to, m.created_at as i64, m.aixp.hops, m.aixp.origin, m.aixp.expires_at as i64, m.aixp.turns,
                (!m.aixp.trail.is_empty()).then(|| serde_json::to_string(&m.aixp.trail).unwrap_or_default()), m.aixp.started_at as i64],
        )
        .map_err(|e| self.write_err(e))?;
        let seq = tx.last_insert_rowid() as u64;
        tx.commit().map_err(|e| self.write_err(e))?;
        Ok(seq)
    }

    fn get_message(&self, id: &str, now_ms: u64) -> Result<Option<Message>, StoreError> {
        let conn = self.lock();
        conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1 AND expires_at > ?2"
        ))
        .and_then(|mut s| {
            s.query_row(params![id, now_ms as i64], row_to_message)
                .optional()
        })
        .map_err(StoreError::Read)
    }

    fn recent_received(
        &self,
        recipient: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let conn = self.lock();
        let mut newest_first: Vec<Message> = conn
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE recipient = ?1 AND expires_at > ?2 ORDER BY seq DESC LIMIT ?3"
            ))
            .and_then(|mut s| {
                s.query_map(params![recipient, now_ms as i64, limit as i64], row_to_message)?
                    .collect()
            })
            .map_err(StoreError::Read)?;
        newest_first.reverse();
        Ok(newest_first)
    }

    fn read_inbox(
        &self,
        recipient: &str,
        after: u64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE recipient = ?1 AND read_at IS NULL AND seq > ?2 AND expires_at > ?3 ORDER BY seq LIMIT ?4"
            ))
            .map_err(StoreError::Read)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = stmt
            .query(params![recipient, after, now, limit])
            .map_err(StoreError::Read)?;
        bounded_messages(&mut rows, usize::MAX).map(|(m, _)| m)
    }

    fn purge_expired(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.write_err(e))?;
        let now = now_ms as i64;
        let plans_before = now_ms.saturating_sub(PLAN_RETENTION_MS) as i64;
        let n = tx
            .execute("DELETE FROM messages WHERE expires_at <= ?1", [now])
            .and_then(|n| {
                tx.execute(
                    "DELETE FROM plan_subtasks WHERE created_at < ?1",
                    [plans_before],
                )?;
                tx.execute("DELETE FROM plans WHERE created_at < ?1", [plans_before])?;
                tx.execute(
                    "DELETE FROM context_tombstones WHERE deleted_at < ?1",
                    [plans_before],
                )?;
                Ok(n)
            })
            .map_err(|e| self.write_err(e))?;
        tx.commit().map_err(|e| self.write_err(e))?;
        Ok(n)
    }

    fn agent_seen(&self, a: &AgentRecord) -> Result<(), StoreError> {
        let caps = serde_json::to_string(&a.capabilities).expect("strings serialise");
        self.lock()
            .execute(
                "INSERT INTO agents (identity, client_name, client_version, capabilities, last_seen) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(identity) DO UPDATE SET client_name = excluded.client_name,
                   client_version = excluded.client_version, capabilities = excluded.capabilities, last_seen = excluded.last_seen",
                params![a.identity, a.client_name, a.client_version, caps, a.last_seen as i64],
            )
            .map(drop)
            .map_err(|e| self.write_err(e))
    }

    fn agents_seen(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT identity, client_name, client_version, capabilities, last_seen FROM agents ORDER BY identity")
            .map_err(StoreError::Read)?;
        let rows = stmt.query_map([], row_to_agent).map_err(StoreError::Read)?;
        rows.collect::<Result<_, _>>().map_err(StoreError::Read)
    }

    fn agent(&self, identity: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.lock()
            .prepare_cached("SELECT identity, client_name, client_version, capabilities, last_seen FROM agents WHERE identity = ?1")
            .and_then(|mut s| s.query_row([identity], row_to_agent).optional())
            .map_err(StoreError::Read)
    }

    fn agent_touched(&self, identity: &str, now_ms: u64) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE agents SET last_seen = max(last_seen, ?2) WHERE identity = ?1",
                params![identity, now_ms as i64],
            )
            .map(drop)
            .map_err(|e| self.write_err(e))
    }

    fn last_seq(&self, recipient: &str) -> Result<u64, StoreError> {
        self.lock()
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM messages WHERE recipient = ?1")
            .and_then(|mut s| s.query_row([recipient], |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .map_err(StoreError::Read)
    }

    fn size_bytes(&self) -> u64 {
        let conn = self.lock();
        let pages: i64 = conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap_or(0);
        let size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap_or(0);
        (pages * size).max(0) as u64
    }

    fn close(&self) -> Result<(), StoreError> {
        if let Some(c) = self.checkpointer.lock().unwrap().take() {
            c.stop();
        }
        self.lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| self.write_err(e))
    }
    fn inbox_page(&self, q: &InboxRead<'_>) -> Result<InboxPage, StoreError> {
        let mut conn = self.lock();
        // One transaction: what is returned as unread is marked before anyone else looks.
        let tx = conn.transaction().map_err(|e| self.write_err(e))?;
        let now = i64::try_from(q.now_ms).unwrap_or(i64::MAX);
        let limit = i64::try_from(q.max_messages).unwrap_or(i64::MAX);
        let mut page = InboxPage::default();
        // Read before this call marks anything, so the page is not repeated here.
        if q.include_read {
            let (mut read, _) = select_messages(
                &tx,
                "recipient = ?1 AND read_at IS NOT NULL AND expires_at > ?2 ORDER BY seq DESC LIMIT ?3",
                params![q.recipient, now, limit],
                q.max_bytes,
            )?;
            read.reverse();
            page.read = read;
        }
        page.messages = select_messages(
            &tx,
            "recipient = ?1 AND read_at IS NULL AND expires_at > ?2 ORDER BY seq LIMIT ?3",
            params![q.recipient, now, limit],
            q.max_bytes,
        )?
        .0;
        if let Some(reader) = q.mark_as {
            let mut mark = tx
                .prepare_cached(
                    "UPDATE messages SET read_at = ?1, read_by = ?2 WHERE seq = ?3 AND read_at IS NULL",
                )
                .map_err(|e| self.write_err(e))?;
            for m in &mut page.messages {
                mark.execute(params![now, reader, m.seq as i64])
                    .map_err(|e| self.write_err(e))?;
                m.read_at = Some(q.now_ms);
                m.read_by = Some(reader.to_owned());
            }
        }
        let last = page.messages.last().map_or(0, |m| m.seq as i64);
        page.pending = tx
            .prepare_cached(
                "SELECT count(*) FROM messages WHERE recipient = ?1 AND read_at IS NULL AND seq > ?2 AND expires_at > ?3",
            )
            .and_then(|mut s| s.query_row(params![q.recipient, last, now], |r| r.get::<_, i64>(0)))
            .map_err(StoreError::Read)?
            .max(0) as u64;
        if let Some((after, reader)) = q.read_elsewhere_after {
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            // One more than the bound: whether there are more is part of the answer.
            let (mut elsewhere, cut) = select_messages(
                &tx,
                "recipient = ?1 AND seq > ?2 AND read_at IS NOT NULL AND read_by IS NOT ?3 AND expires_at > ?4 ORDER BY seq LIMIT ?5",
                params![q.recipient, after, reader, now, limit.saturating_add(1)],
                q.max_bytes,
            )?;
            let over = elsewhere.len() > q.max_messages;
            elsewhere.truncate(q.max_messages);
            page.read_elsewhere = elsewhere;
            page.read_elsewhere_more = cut || over;
        }
        tx.commit().map_err(|e| self.write_err(e))?;
        Ok(page)
    }

    fn delete_state(&self, key: &str) -> Result<bool, StoreError> {
        self.lock()
            .execute("DELETE FROM shared_state WHERE key = ?1", [key])
            .map(|n| n > 0)
            .map_err(|e| self.write_err(e))
    }

    fn revoke_subject(&self, subject: &str, not_before: u64) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO revoked_subjects (subject, not_before) VALUES (?1, ?2)
                 ON CONFLICT(subject) DO UPDATE SET not_before = max(not_before, excluded.not_before)",
                params![subject, not_before as i64],
            )
            .map(drop)
            .map_err(|e| self.write_err(e))
    }

    fn subject_not_before(&self, subject: &str) -> Result<Option<u64>, StoreError> {
        self.lock()
            .prepare_cached("SELECT not_before FROM revoked_subjects WHERE subject = ?1")
            .and_then(|mut s| s.query_row([subject], |r| r.get::<_, i64>(0)).optional())
            .map(|t| t.map(|t| t.max(0) as u64))
            .map_err(StoreError::Read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(id: &str, to: &str, created: u64, expires: u64) -> Message {
        Message {
            seq: 0,
            id: id.into(),
            from: "alice".into(),
            to: to.into(),
            text: format!("text of {id}"),
            reply_to: None,
            created_at: created,
            aixp: Envelope {
                version: "aixp/1".into(),
                id: id.into(),
                hops: 1,
                origin: "alice".into(),
                expires_at: expires,
                ..Envelope::default()
            },
            read_at: None,
            read_by: None,
        }
    }

    /// A read of bob's inbox by `reader` (None: a peek), unbounded but for `max_bytes`.
    fn read(s: &SqliteStore, reader: Option<&str>, now: u64, max_bytes: usize) -> InboxPage {
        s.inbox_page(&InboxRead {
            recipient: "bob",
            mark_as: reader,
            include_read: false,
            read_elsewhere_after: None,
            now_ms: now,
            max_messages: 100,
            max_bytes,
        })
        .unwrap()
    }

    fn seqs(ms: &[Message]) -> Vec<u64> {
        ms.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn state_is_json_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SqliteStore::open(dir.path(), StoreLimits::default()).unwrap();
            s.put_state("plan", &json!({"steps": [1, 2]}), "alice", 1)
                .unwrap();
            s.put_state("plan", &json!({"steps": [1, 2, 3]}), "bob", 2)
                .unwrap();
            s.put_state("n", &json!(5), "bob", 2).unwrap();
            s.close().unwrap();
        }
        let s = SqliteStore::open(dir.path(), StoreLimits::default()).unwrap();
        assert_eq!(
            s.get_state("plan").unwrap(),
            Some(json!({"steps": [1, 2, 3]}))
        );
        assert_eq!(
            Value::Object(s.snapshot().unwrap()),
            json!({"n": 5, "plan": {"steps": [1, 2, 3]}})
        );
        assert_eq!(s.get_state("missing").unwrap(), None);
    }

    #[test]
    fn limits_say_their_number_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let limits = StoreLimits {
            max_value_bytes: 10,
            max_keys: 1,
            max_inbox: 1,
            ..Default::default()
        };
        let s = SqliteStore::open(dir.path(), limits).unwrap();
        let err = s
            .put_state("k", &json!("a long string"), "a", 1)
            .unwrap_err();
        assert!(err.to_string().contains("at most 10"), "{err}");
        s.put_state("k", &json!(1), "a", 1).unwrap();
        let err = s.put_state("k2", &json!(1), "a", 1).unwrap_err();
        assert!(err.to_string().contains("1 keys"), "{err}");
        s.push_message(&msg("m1", "bob", 1, 100)).unwrap();
        let err = s.push_message(&msg("m2", "bob", 1, 100)).unwrap_err();
        assert!(matches!(err, StoreError::InboxFull { max: 1, .. }), "{err}");
        assert_eq!(s.read_inbox("bob", 0, 2, 10).unwrap().len(), 1);
    }

    #[test]
    fn a_read_marks_what_it_returns_keeps_it_and_hides_expired() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), StoreLimits::default()).unwrap();
        let a = s.push_message(&msg("m1", "bob", 1, 100)).unwrap();
        let b = s.push_message(&msg("m2", "bob", 1, 100)).unwrap();
        s.push_message(&msg("m3", "bob", 1, 50)).unwrap();
        s.push_message(&msg("m4", "carol", 1, 100)).unwrap();
        // A peek marks nothing: the same three come back.
        assert_eq!(read(&s, None, 10, usize::MAX).messages.len(), 3);
        let p = read(&s, None, 10, usize::MAX);
        assert_eq!(p.messages[0].aixp.hops, 1);
        assert_eq!(p.messages[0].read_at, None);
        // m3 has expired by t=60: never returned.
        let p = read(&s, Some("connection 1"), 60, usize::MAX);
        assert_eq!(seqs(&p.messages), [a, b]);
        assert_eq!(p.messages[0].read_at, Some(60));
        assert_eq!(p.messages[0].read_by.as_deref(), Some("connection 1"));
        assert_eq!(p.pending, 0);
        // Marked: not unread again, but kept until expiry, with who read it and when.
        assert!(
            read(&s, Some("connection 2"), 61, usize::MAX)
                .messages
                .is_empty()
        );
        let kept = s.get_message("m1", 61).unwrap().unwrap();
        assert_eq!(
            (kept.read_at, kept.read_by.as_deref()),
            (Some(60), Some("connection 1"))
        );
        let p = s
            .inbox_page(&InboxRead {
                include_read: true,
                ..InboxRead {
                    recipient: "bob",
                    mark_as: None,
                    include_read: false,
                    read_elsewhere_after: None,
                    now_ms: 61,
                    max_messages: 1,
                    max_bytes: usize::MAX,
                }
            })
            .unwrap();
        assert_eq!(seqs(&p.read), [b], "the most recent read ones, bounded");
        assert!(s.get_message("m3", 60).unwrap().is_none());
        // Expiry deletes read and unread alike.
        assert_eq!(s.purge_expired(60).unwrap(), 1);
        assert_eq!(s.purge_expired(100).unwrap(), 3);
        assert!(s.get_message("m1", 0).unwrap().is_none());
    }

    #[test]
    fn messages_read_by_another_session_are_reported_after_the_cursor() {
        let s = SqliteStore::with_connection(
            rusqlite::Connection::open_in_memory().unwrap(),
            StoreLimits::default(),
        )
        .unwrap();
        let old = s.push_message(&msg("m0", "bob", 1, 100)).unwrap();
        read(&s, Some("connection 1"), 2, usize::MAX);
        // Session 2 joins now: its cursor starts at bob's highest seq.
        let cursor = s.last_seq("bob").unwrap();
        assert_eq!(cursor, old);
        let m1 = s.push_message(&msg("m1", "bob", 3, 100)).unwrap();
        let m2 = s.push_message(&msg("m2", "bob", 3, 100)).unwrap();
        read(&s, Some("connection 1"), 4, usize::MAX);
        let ask = |reader: &'static str, after: u64, max_messages: usize| {
            s.inbox_page(&InboxRead {
                recipient: "bob",
                mark_as: Some(reader),
                include_read: false,
                read_elsewhere_after: Some((after, reader)),
                now_ms: 5,
                max_messages,
                max_bytes: usize::MAX,
            })
            .unwrap()
        };
        let p = ask("connection 2", cursor, 1);
        assert!(p.messages.is_empty());
        assert_eq!(
            seqs(&p.read_elsewhere),
            [m1],
            "bounded, and says there is more"
        );
        assert!(p.read_elsewhere_more);
        assert_eq!(p.read_elsewhere[0].read_by.as_deref(), Some("connection 1"));
        let p = ask("connection 2", m1, 10);
        assert_eq!(seqs(&p.read_elsewhere), [m2]);
        assert!(!p.read_elsewhere_more);
        // The reader's own reads are never reported back to it.
        assert!(ask("connection 1", 0, 10).read_elsewhere.is_empty());
        assert_eq!(s.last_seq("nobody").unwrap(), 0);
    }

    #[test]
    fn an_older_database_gains_the_read_columns_and_loses_the_delivered_table() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The schema before read marks: no read_at/read_by, the old trigger and table.
            let c = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
            c.execute_batch(
                "CREATE TABLE messages (
                  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, sender TEXT NOT NULL,
                  recipient TEXT NOT NULL, text TEXT NOT NULL, reply_to TEXT, created_at INTEGER NOT NULL,
                  hops INTEGER NOT NULL, origin TEXT NOT NULL, expires_at INTEGER NOT NULL);
                CREATE TABLE inbox_delivered (recipient TEXT PRIMARY KEY, through INTEGER NOT NULL);
                CREATE TABLE pending_usage (sender TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
                CREATE TRIGGER pending_usage_delete AFTER DELETE ON messages BEGIN
                  UPDATE pending_usage SET bytes = bytes - octet_length(OLD.text) WHERE sender = OLD.sender;
                END;
                INSERT INTO messages (id, sender, recipient, text, created_at, hops, origin, expires_at)
                  VALUES ('old', 'alice', 'bob', 'from before', 1, 1, 'alice', 100);",
            )
            .unwrap();
        }
        let limits = StoreLimits {
            max_pending_bytes_per_sender: 20,
            ..Default::default()
        };
        for _ in 0..2 {
            let s = SqliteStore::open(dir.path(), limits).unwrap();
            let tables: i64 = s
                .lock()
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'inbox_delivered'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(tables, 0);
            s.close().unwrap();
        }
        let s = SqliteStore::open(dir.path(), limits).unwrap();
        let p = read(&s, Some("connection 1"), 2, usize::MAX);
        assert_eq!(p.messages[0].text, "from before");
        // Read, so alice's 11 bytes no longer count against her 20 (only 9 more would fit before).
        let mut m = msg("new", "bob", 3, 200);
        m.text = "x".repeat(20);
        s.push_message(&m).unwrap();
        // Expiry of the read message does not release alice's quota a second time.
        s.purge_expired(100).unwrap();
        let mut m = msg("newer", "bob", 3, 200);
        m.text = "y".to_owned();
        assert!(matches!(
            s.push_message(&m).unwrap_err(),
            StoreError::PendingQuota { would_be: 21, .. }
        ));
    }

    /// The usage counters the quotas read agree with the rows, whatever wrote or deleted them.
    #[test]
    fn usage_counters_follow_every_write_overwrite_delete_and_purge() {
        let s = SqliteStore::with_connection(
            rusqlite::Connection::open_in_memory().unwrap(),
            StoreLimits::default(),
        )
        .unwrap();
        s.put_state("a", &json!("1234"), "alice", 1).unwrap();
        s.put_state("b", &json!("12"), "alice", 1).unwrap();
        s.put_state("a", &json!("1"), "bob", 2).unwrap(); // bob takes over alice's key
        s.put_state("b", &json!("123456"), "alice", 3).unwrap();
        assert!(s.delete_state("a").unwrap());
        s.push_message(&msg("m1", "carol", 1, 10)).unwrap();
        s.push_message(&msg("m2", "carol", 2, 1_000)).unwrap();
        s.push_message(&msg("m3", "bob", 2, 50)).unwrap();
        s.push_message(&msg("m4", "bob", 2, 1_000)).unwrap();
        read(&s, Some("connection 1"), 3, usize::MAX);
        s.purge_expired(100).unwrap();
        let conn = s.lock();
        let counted = |sql: &str| -> Vec<(String, i64, i64)> {
            let mut st = conn.prepare(sql).unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(
            counted(
                "SELECT identity, bytes, keys FROM context_usage WHERE keys > 0 ORDER BY identity"
            ),
            counted(
                "SELECT updated_by, sum(octet_length(key) + octet_length(value)), count(*) FROM shared_state GROUP BY updated_by ORDER BY updated_by"
            )
        );
        assert_eq!(
            counted("SELECT sender, bytes, 0 FROM pending_usage WHERE bytes > 0 ORDER BY sender"),
            counted(
                "SELECT sender, sum(octet_length(text)), 0 FROM messages WHERE read_at IS NULL GROUP BY sender ORDER BY sender"
            )
        );
        // The unread count per inbox (what max_inbox is checked against) follows inserts, reads and purges.
        let unread = counted(
            "SELECT recipient, unread, 0 FROM inbox_usage WHERE unread > 0 ORDER BY recipient",
        );
        assert_eq!(
            unread,
            counted(
                "SELECT recipient, count(*), 0 FROM messages WHERE read_at IS NULL GROUP BY recipient ORDER BY recipient"
            )
        );
        assert!(!unread.is_empty(), "some message is still unread");
    }

    #[test]
    fn one_identity_cannot_fill_the_store_for_everyone() {
        let dir = tempfile::tempdir().unwrap();
        let limits = StoreLimits {
            max_context_bytes_per_identity: 100,
            max_keys_per_identity: 3,
            max_pending_bytes_per_sender: 50,
            ..Default::default()
        };
        let s = SqliteStore::open(dir.path(), limits).unwrap();
        let err = s
            .put_state(&"k".repeat(MAX_KEY_BYTES + 1), &json!(1), "mallory", 1)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::KeyTooLong { len: 257, max: 256 }),
            "{err}"
        );
        assert!(err.to_string().contains("256"), "{err}");
        s.put_state(&"k".repeat(MAX_KEY_BYTES), &json!(1), "alice", 1)
            .unwrap_err(); // 257 bytes of key and value: over alice's 100 too.
        // Mallory's bytes: key + JSON value.
        s.put_state("a", &json!("x".repeat(60)), "mallory", 1)
            .unwrap();
        let err = s
            .put_state("b", &json!("x".repeat(40)), "mallory", 1)
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::ContextQuota {
                    would_be: 106,
                    max: 100,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("at most 100"), "{err}");
        // Replacing one's own key counts its new size, not both.
        s.put_state("a", &json!("x".repeat(90)), "mallory", 2)
            .unwrap();
        // Alice is unaffected by mallory's quota.
        s.put_state("b", &json!("x".repeat(90)), "alice", 2)
            .unwrap();
        // Keys per identity.
        s.put_state("a", &json!(1), "mallory", 3).unwrap();
        s.put_state("c", &json!(1), "mallory", 3).unwrap();
        s.put_state("d", &json!(1), "mallory", 3).unwrap();
        let err = s.put_state("e", &json!(1), "mallory", 3).unwrap_err();
        assert!(matches!(err, StoreError::KeyQuota { max: 3, .. }), "{err}");
        s.put_state("e", &json!(1), "alice", 3).unwrap();
        // Deleting frees the quota.
        assert!(s.delete_state("d").unwrap());
        assert!(!s.delete_state("d").unwrap());
        s.put_state("f", &json!(1), "mallory", 4).unwrap();
        assert_eq!(s.get_state("d").unwrap(), None);
        // Pending message bytes per sender; another sender still gets through.
        let mut m = msg("m1", "bob", 1, 100);
        m.text = "y".repeat(30);
        s.push_message(&m).unwrap();
        let mut m2 = msg("m2", "carol", 1, 100);
        m2.text = "y".repeat(30);
        let err = s.push_message(&m2).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::PendingQuota {
                    would_be: 60,
                    max: 50,
                    ..
                }
            ),
            "{err}"
        );
        m2.from = "dave".into();
        s.push_message(&m2).unwrap();
        // Read messages no longer count, though they are kept.
        let mut m3 = msg("m3", "carol", 1, 100);
        m3.text = "y".repeat(30);
        assert!(s.push_message(&m3).is_err());
        let p = read(&s, None, 2, usize::MAX);
        assert_eq!(p.messages.len(), 1, "a peek releases nothing");
        assert!(s.push_message(&m3).is_err());
        read(&s, Some("connection 1"), 2, usize::MAX);
        assert!(s.get_message("m1", 2).unwrap().is_some());
        m3.text = "y".repeat(30);
        s.push_message(&m3).unwrap();
    }

    #[test]
    fn inbox_pages_by_bytes_and_counts_what_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), StoreLimits::default()).unwrap();
        let mut sent = Vec::new();
        for i in 0..5 {
            let mut m = msg(&format!("m{i}"), "bob", 1, 100);
            m.text = "z".repeat(1000);
            sent.push(s.push_message(&m).unwrap());
        }
        let one = message_json_bytes(&s.read_inbox("bob", 0, 2, 1).unwrap()[0]);
        // Two fit in 2.5 messages' worth; the rest are counted as pending.
        let p = read(&s, Some("c"), 2, one * 5 / 2);
        assert_eq!(seqs(&p.messages), sent[..2]);
        assert_eq!(p.pending, 3);
        // A bound smaller than one message still returns one: a reader always makes progress.
        let p = read(&s, Some("c"), 2, 10);
        assert_eq!(seqs(&p.messages), [sent[2]]);
        assert_eq!(p.pending, 2);
        let p = read(&s, Some("c"), 2, usize::MAX);
        assert_eq!((p.messages.len(), p.pending), (2, 0));
    }

    #[test]
    fn a_failing_write_returns_an_error_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), StoreLimits::default()).unwrap();
        s.put_state("kept", &json!("before"), "a", 1).unwrap();
        // Read-only: as when the file system turns read-only under the hub.
        s.lock().pragma_update(None, "query_only", true).unwrap();
        let err = s.put_state("kept", &json!("after"), "a", 2).unwrap_err();
        assert!(matches!(err, StoreError::Write(_)), "{err}");
        assert!(s.push_message(&msg("m", "bob", 1, 100)).is_err());
        s.lock().pragma_update(None, "query_only", false).unwrap();
        assert_eq!(s.get_state("kept").unwrap(), Some(json!("before")));
    }

    #[test]
    fn disk_full_is_reported_with_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let limits = StoreLimits {
            max_db_bytes: 128 * 1024,
            max_value_bytes: 1 << 20,
            ..Default::default()
        };
        let s = SqliteStore::open(dir.path(), limits).unwrap();
        s.put_state("small", &json!("ok"), "a", 1).unwrap();
        let big = json!("x".repeat(200 * 1024));
        let err = s.put_state("big", &big, "a", 2).unwrap_err();
        assert!(
            matches!(err, StoreError::Full { max_bytes: 131072 }),
            "{err}"
        );
        assert!(err.to_string().contains("131072"));
        assert_eq!(s.get_state("small").unwrap(), Some(json!("ok")));
        assert_eq!(s.get_state("big").unwrap(), None);
    }

    #[test]
    fn agents_seen_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), StoreLimits::default()).unwrap();
        let rec = AgentRecord {
            identity: "bob".into(),
            client_name: Some("claude".into()),
            client_version: Some("1".into()),
            capabilities: vec!["rust".into()],
            last_seen: 5,
        };
        s.agent_seen(&rec).unwrap();
        assert_eq!(s.agents_seen().unwrap(), vec![rec]);
        assert!(s.size_bytes() > 0);
    }

    #[test]
    fn revocation_times_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), StoreLimits::default()).unwrap();
        assert_eq!(s.subject_not_before("alice").unwrap(), None);
        s.revoke_subject("alice", 200).unwrap();
        s.revoke_subject("alice", 100).unwrap();
        assert_eq!(s.subject_not_before("alice").unwrap(), Some(200));
        s.revoke_subject("alice", 300).unwrap();
        assert_eq!(s.subject_not_before("alice").unwrap(), Some(300));
        assert_eq!(s.subject_not_before("bob").unwrap(), None);
    }

    #[test]
    fn an_old_database_gains_versions_and_migrating_twice_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(
                "CREATE TABLE shared_state (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_by TEXT NOT NULL, updated_at INTEGER NOT NULL);
                 INSERT INTO shared_state VALUES ('old', '1', 'alice', 5);",
            )
            .unwrap();
        }
        for round in 0..2 {
            let s = SqliteStore::open(dir.path(), StoreLimits::default()).unwrap();
            let e = s.get_state_entry("old").unwrap().unwrap();
            assert_eq!((e.version, e.value.clone()), (1 + round, json!(1 + round)));
            let v = s
                .put_state_if("old", &json!(2 + round), "bob", 6, Some(1 + round))
                .unwrap();
            assert_eq!(v, 2 + round);
        }
    }

    #[test]
    fn a_plan_records_the_first_answer_to_each_subtask() {
        let s = SqliteStore::with_connection(
            Connection::open_in_memory().unwrap(),
            StoreLimits::default(),
        )
        .unwrap();
        s.push_message(&msg("m1", "bob", 1, 1_000)).unwrap();
        // An answer that came before the plan was stored still counts.
        let mut early = msg("a1", "alice", 2, 1_000);
        early.from = "bob".into();
        early.reply_to = Some("m1".into());
        s.push_message(&early).unwrap();
        let sub = |i: u32, id: &str| PlanSubtask {
            index: i,
            description: format!("step {i}"),
            assignee: Some("bob".into()),
            message_id: Some(id.into()),
            answer: None,
        };
        s.put_plan(&Plan {
            plan_id: "p".into(),
            owner: "alice".into(),
            task: "t".into(),
            created_at: 3,
            subtasks: vec![sub(1, "m1"), sub(2, "m2")],
        })
        .unwrap();
        s.push_message(&msg("m2", "bob", 4, 1_000)).unwrap();
        let mut later = msg("a2", "alice", 5, 1_000);
        later.reply_to = Some("m2".into());
        s.push_message(&later).unwrap();
        let mut second = msg("a3", "alice", 6, 1_000);
        second.reply_to = Some("m2".into());
        s.push_message(&second).unwrap();
        let p = s.get_plan("p").unwrap().unwrap();
        let answers: Vec<_> = p
            .subtasks
            .iter()
            .map(|st| st.answer.as_ref().map(|a| a.message_id.as_str()))
            .collect();
        assert_eq!(answers, [Some("a1"), Some("a2")]);
        assert!(s.message_known("m1", 10).unwrap());
        assert!(!s.message_known("zz", 10).unwrap());
        // Kept past the message's expiry while the plan is; then purged with it.
        s.purge_expired(2_000).unwrap();
        assert!(s.message_known("m1", 2_000).unwrap());
        s.purge_expired(PLAN_RETENTION_MS + 10).unwrap();
        assert!(s.get_plan("p").unwrap().is_none());
        assert!(!s.message_known("m1", PLAN_RETENTION_MS + 10).unwrap());
    }
}
