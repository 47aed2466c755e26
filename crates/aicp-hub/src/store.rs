//! Durable hub state behind a small trait: shared context, messages until read
//! or expired, and the agents seen. The default is SQLite (bundled, WAL) in the
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
}

/// One page of a recipient's inbox, after acknowledging what the caller may acknowledge.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxPage {
    /// Unexpired messages after `acked_through`, oldest first.
    pub messages: Vec<Message>,
    /// What was actually acknowledged (deleted): `since` clamped to the highest
    /// seq this recipient has ever been handed, so a cursor from the future
    /// (or another inbox) cannot delete messages nobody has read.
    pub acked_through: u64,
    /// Unread, unexpired messages after this page (0 when the page holds them all).
    pub pending: u64,
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
    /// [`Store::inbox_page`] without a byte bound: the messages alone.
    fn read_inbox(
        &self,
        recipient: &str,
        ack_through: u64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;
    /// Deletes expired messages; returns how many.
    fn purge_expired(&self, now_ms: u64) -> Result<usize, StoreError>;
    fn agent_seen(&self, agent: &AgentRecord) -> Result<(), StoreError>;
    fn agents_seen(&self) -> Result<Vec<AgentRecord>, StoreError>;
    /// Bytes the store occupies (for /metrics).
    fn size_bytes(&self) -> u64;
    /// Flushes the write-ahead log into the database; called once at shutdown.
    fn close(&self) -> Result<(), StoreError>;
    /// Deletes `recipient`'s messages up to `since` but never beyond the
    /// highest seq this recipient has been handed (by this call or earlier
    /// ones), then returns up to `max_messages` unexpired ones after that,
    /// oldest first, stopping before `max_bytes` of message JSON (always at
    /// least one). Records the last one returned as handed out.
    fn inbox_page(
        &self,
        recipient: &str,
        since: u64,
        now_ms: u64,
        max_messages: usize,
        max_bytes: usize,
    ) -> Result<InboxPage, StoreError>;
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

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS shared_state (
  key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_by TEXT NOT NULL, updated_at INTEGER NOT NULL,
  version INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, sender TEXT NOT NULL,
  recipient TEXT NOT NULL, text TEXT NOT NULL, reply_to TEXT, created_at INTEGER NOT NULL,
  hops INTEGER NOT NULL, origin TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS messages_inbox ON messages(recipient, seq);
CREATE INDEX IF NOT EXISTS messages_expiry ON messages(expires_at);
DROP INDEX IF EXISTS messages_sender;
DROP INDEX IF EXISTS shared_state_writer;
CREATE TABLE IF NOT EXISTS inbox_delivered (
  recipient TEXT PRIMARY KEY, through INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
  identity TEXT PRIMARY KEY, client_name TEXT, client_version TEXT, capabilities TEXT NOT NULL,
  last_seen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_subjects (
  subject TEXT PRIMARY KEY, not_before INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS context_usage (
  identity TEXT PRIMARY KEY, bytes INTEGER NOT NULL, keys INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending_usage (
  sender TEXT PRIMARY KEY, bytes INTEGER NOT NULL);
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
CREATE TABLE IF NOT EXISTS message_log (
  id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS message_log_expiry ON message_log(expires_at);
CREATE TRIGGER IF NOT EXISTS message_log_insert AFTER INSERT ON messages BEGIN
  INSERT OR IGNORE INTO message_log (id, expires_at) VALUES (NEW.id, NEW.expires_at);
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
CREATE TRIGGER IF NOT EXISTS pending_usage_delete AFTER DELETE ON messages BEGIN
  UPDATE pending_usage SET bytes = bytes - octet_length(OLD.text) WHERE sender = OLD.sender;
END;
";

/// Recounts the usage tables from the rows themselves, once at open: a store
/// written before the triggers existed (or by hand) starts from the truth.
const RECOUNT_USAGE: &str = "
DELETE FROM context_usage;
INSERT INTO context_usage SELECT updated_by, sum(octet_length(key) + octet_length(value)), count(*)
  FROM shared_state GROUP BY updated_by;
DELETE FROM pending_usage;
INSERT INTO pending_usage SELECT sender, sum(octet_length(text)) FROM messages GROUP BY sender;
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
        migrate(&conn)?;
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

/// Brings a database an older hub wrote up to [`SCHEMA`]; idempotent, run at every open.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_version: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('shared_state') WHERE name = 'version'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_version {
        conn.execute_batch(
            "ALTER TABLE shared_state ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
        )?;
    }
    // Messages stored before the log existed may still be answered.
    conn.execute_batch(
        "INSERT OR IGNORE INTO message_log (id, expires_at) SELECT id, expires_at FROM messages",
    )
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
            origin: r.get(8)?,
            expires_at: r.get::<_, i64>(9)? as u64,
        },
        id,
    })
}

/// A message's size as the JSON a page carries it in (what paging by bytes counts).
pub fn message_json_bytes(m: &Message) -> usize {
    serde_json::to_vec(m).map_or(0, |v| v.len())
}

const MESSAGE_COLUMNS: &str =
    "seq, id, sender, recipient, text, reply_to, created_at, hops, origin, expires_at";

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
        tx.execute(
            "INSERT INTO shared_state (key, value, updated_by, updated_at, version) VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by,
               updated_at = excluded.updated_at, version = shared_state.version + 1",
            params![key, text, by, now_ms as i64],
        )
        .map_err(|e| self.write_err(e))?;
        tx.commit().map_err(|e| self.write_err(e))?;
        Ok(current + 1)
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
                "SELECT EXISTS (SELECT 1 FROM message_log WHERE id = ?1 AND expires_at > ?2)
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
        let n: i64 = tx
            .query_row(
                "SELECT count(*) FROM messages WHERE recipient = ?1 AND expires_at > ?2",
                params![m.to, m.created_at as i64],
                |r| r.get(0),
            )
            .map_err(StoreError::Read)?;
        if n as usize >= self.limits.max_inbox {
            return Err(StoreError::InboxFull {
                recipient: m.to.clone(),
                max: self.limits.max_inbox,
            });
        }
        // Kept by triggers on insert and delete; expired messages count until the
        // purge (every minute) removes them.
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
            "INSERT INTO messages (id, sender, recipient, text, reply_to, created_at, hops, origin, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![m.id, m.from, m.to, m.text, m.reply_to, m.created_at as i64, m.aixp.hops, m.aixp.origin, m.aixp.expires_at as i64],
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

    fn read_inbox(
        &self,
        recipient: &str,
        ack_through: u64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        self.inbox_page(recipient, ack_through, now_ms, limit, usize::MAX)
            .map(|p| p.messages)
    }

    fn purge_expired(&self, now_ms: u64) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.write_err(e))?;
        let now = now_ms as i64;
        let plans_before = now_ms.saturating_sub(PLAN_RETENTION_MS) as i64;
        let n = tx
            .execute("DELETE FROM messages WHERE expires_at <= ?1", [now])
            .and_then(|n| {
                tx.execute("DELETE FROM message_log WHERE expires_at <= ?1", [now])?;
                tx.execute(
                    "DELETE FROM plan_subtasks WHERE created_at < ?1",
                    [plans_before],
                )?;
                tx.execute("DELETE FROM plans WHERE created_at < ?1", [plans_before])?;
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
        let rows = stmt
            .query_map([], |r| {
                let caps: String = r.get(3)?;
                Ok(AgentRecord {
                    identity: r.get(0)?,
                    client_name: r.get(1)?,
                    client_version: r.get(2)?,
                    capabilities: serde_json::from_str(&caps).unwrap_or_default(),
                    last_seen: r.get::<_, i64>(4)? as u64,
                })
            })
            .map_err(StoreError::Read)?;
        rows.collect::<Result<_, _>>().map_err(StoreError::Read)
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
    fn inbox_page(
        &self,
        recipient: &str,
        since: u64,
        now_ms: u64,
        max_messages: usize,
        max_bytes: usize,
    ) -> Result<InboxPage, StoreError> {
        let mut conn = self.lock();
        // One transaction: the clamp, the delete and the new high-water mark agree.
        let tx = conn.transaction().map_err(|e| self.write_err(e))?;
        let handed: i64 = tx
            .prepare_cached("SELECT through FROM inbox_delivered WHERE recipient = ?1")
            .and_then(|mut s| s.query_row([recipient], |r| r.get(0)).optional())
            .map_err(StoreError::Read)?
            .unwrap_or(0);
        // SQLite integers are i64: a `since` of 2^63 or more saturates instead of wrapping negative.
        let ack = i64::try_from(since).unwrap_or(i64::MAX).min(handed).max(0);
        if ack > 0 {
            tx.prepare_cached("DELETE FROM messages WHERE recipient = ?1 AND seq <= ?2")
                .and_then(|mut s| s.execute(params![recipient, ack]))
                .map_err(|e| self.write_err(e))?;
        }
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let mut messages = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE recipient = ?1 AND seq > ?2 AND expires_at > ?3 ORDER BY seq LIMIT ?4"
                ))
                .map_err(StoreError::Read)?;
            let limit = i64::try_from(max_messages).unwrap_or(i64::MAX);
            let mut rows = stmt
                .query(params![recipient, ack, now, limit])
                .map_err(StoreError::Read)?;
            let mut bytes = 0usize;
            while let Some(row) = rows.next().map_err(StoreError::Read)? {
                let m = row_to_message(row).map_err(StoreError::Read)?;
                let len = message_json_bytes(&m);
                if !messages.is_empty() && bytes.saturating_add(len) > max_bytes {
                    break;
                }
                bytes = bytes.saturating_add(len);
                messages.push(m);
            }
        }
        let last = messages.last().map_or(ack, |m| m.seq as i64);
        if last > handed {
            tx.prepare_cached(
                "INSERT INTO inbox_delivered (recipient, through) VALUES (?1, ?2)
                 ON CONFLICT(recipient) DO UPDATE SET through = max(through, excluded.through)",
            )
            .and_then(|mut s| s.execute(params![recipient, last]))
            .map_err(|e| self.write_err(e))?;
        }
        let pending: i64 = tx
            .prepare_cached(
                "SELECT count(*) FROM messages WHERE recipient = ?1 AND seq > ?2 AND expires_at > ?3",
            )
            .and_then(|mut s| s.query_row(params![recipient, last, now], |r| r.get(0)))
            .map_err(StoreError::Read)?;
        tx.commit().map_err(|e| self.write_err(e))?;
        Ok(InboxPage {
            messages,
            acked_through: ack as u64,
            pending: pending.max(0) as u64,
        })
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
            },
        }
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
    fn inbox_acknowledges_by_cursor_and_hides_expired() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), StoreLimits::default()).unwrap();
        let a = s.push_message(&msg("m1", "bob", 1, 100)).unwrap();
        let b = s.push_message(&msg("m2", "bob", 1, 100)).unwrap();
        s.push_message(&msg("m3", "bob", 1, 50)).unwrap();
        s.push_message(&msg("m4", "carol", 1, 100)).unwrap();
        let all = s.read_inbox("bob", 0, 10, 10).unwrap();
        assert_eq!(
            all.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["m1", "m2", "m3"]
        );
        assert_eq!(all[0].aixp.hops, 1);
        // Reading again without acknowledging returns the same (durable until read).
        assert_eq!(s.read_inbox("bob", 0, 10, 10).unwrap().len(), 3);
        // Acknowledge through m1; m3 has expired by t=60.
        let rest = s.read_inbox("bob", a, 60, 10).unwrap();
        assert_eq!(rest.iter().map(|m| m.seq).collect::<Vec<_>>(), [b]);
        assert!(
            s.get_message("m1", 60).unwrap().is_none(),
            "acknowledged messages are deleted"
        );
        assert!(
            s.get_message("m3", 60).unwrap().is_none(),
            "expired messages are never returned"
        );
        assert_eq!(s.purge_expired(60).unwrap(), 1);
        assert_eq!(s.read_inbox("carol", 0, 60, 10).unwrap()[0].to, "carol");
    }

    #[test]
    fn a_cursor_from_the_future_acknowledges_only_what_was_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), StoreLimits::default()).unwrap();
        // Nothing handed to bob yet: a `since` far ahead deletes nothing.
        let m1 = s.push_message(&msg("m1", "bob", 1, 100)).unwrap();
        let p = s.inbox_page("bob", 1_000_000, 10, 10, usize::MAX).unwrap();
        assert_eq!(p.acked_through, 0);
        assert_eq!(p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [m1]);
        // Bob has been handed m1; messages stored later are not acknowledged by a large `since`.
        let m2 = s.push_message(&msg("m2", "bob", 1, 100)).unwrap();
        let p = s.inbox_page("bob", 1_000_000, 10, 10, usize::MAX).unwrap();
        assert_eq!(p.acked_through, m1);
        assert_eq!(p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [m2]);
        // Another recipient's cursor does not reach into bob's inbox.
        let c1 = s.push_message(&msg("c1", "carol", 1, 100)).unwrap();
        s.inbox_page("carol", 0, 10, 10, usize::MAX).unwrap();
        let m3 = s.push_message(&msg("m3", "bob", 1, 100)).unwrap();
        let p = s.inbox_page("bob", c1 + 100, 10, 10, usize::MAX).unwrap();
        assert_eq!(p.acked_through, m2);
        assert_eq!(p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [m3]);
        // 2^63 and u64::MAX saturate instead of wrapping to a negative i64.
        for since in [1u64 << 63, u64::MAX] {
            let p = s.inbox_page("bob", since, 10, 10, usize::MAX).unwrap();
            assert_eq!(p.acked_through, m3, "{since}");
            assert!(p.messages.is_empty());
        }
        let m4 = s.push_message(&msg("m4", "bob", 1, 100)).unwrap();
        let p = s.inbox_page("bob", u64::MAX, 10, 10, usize::MAX).unwrap();
        assert_eq!(p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [m4]);
        // The high-water mark survives a restart.
        s.close().unwrap();
        drop(s);
        let s = SqliteStore::open(dir.path(), StoreLimits::default()).unwrap();
        let m5 = s.push_message(&msg("m5", "bob", 1, 100)).unwrap();
        let p = s.inbox_page("bob", u64::MAX, 10, 10, usize::MAX).unwrap();
        assert_eq!(p.acked_through, m4);
        assert_eq!(p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [m5]);
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
                "SELECT sender, sum(octet_length(text)), 0 FROM messages GROUP BY sender ORDER BY sender"
            )
        );
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
        // Read (acknowledged) messages no longer count.
        let p = s.inbox_page("bob", 0, 2, 10, usize::MAX).unwrap();
        s.inbox_page("bob", p.messages[0].seq, 2, 10, usize::MAX)
            .unwrap();
        let mut m3 = msg("m3", "carol", 1, 100);
        m3.text = "y".repeat(30);
        s.push_message(&m3).unwrap();
    }

    #[test]
    fn inbox_pages_by_bytes_and_counts_what_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), StoreLimits::default()).unwrap();
        let mut seqs = Vec::new();
        for i in 0..5 {
            let mut m = msg(&format!("m{i}"), "bob", 1, 100);
            m.text = "z".repeat(1000);
            seqs.push(s.push_message(&m).unwrap());
        }
        let one = message_json_bytes(&s.read_inbox("bob", 0, 2, 1).unwrap()[0]);
        // Two fit in 2.5 messages' worth; the rest are counted as pending.
        let p = s.inbox_page("bob", 0, 2, 100, one * 5 / 2).unwrap();
        assert_eq!(
            p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            seqs[..2]
        );
        assert_eq!(p.pending, 3);
        // A bound smaller than one message still returns one: a reader always makes progress.
        let p = s.inbox_page("bob", seqs[1], 2, 100, 10).unwrap();
        assert_eq!(
            p.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            [seqs[2]]
        );
        assert_eq!(p.pending, 2);
        let p = s.inbox_page("bob", seqs[2], 2, 100, usize::MAX).unwrap();
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
