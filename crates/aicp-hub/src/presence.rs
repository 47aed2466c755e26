//! Who is connected right now: one entry per connection (an identity may hold
//! several), what each declared at `initialize`, each session's "last looked"
//! inbox cursor, and the wake-ups that go with it: a per-identity inbox signal
//! for long-polls and a broadcast of changed resource URIs that sessions filter
//! by their subscriptions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use super::routing::Candidate;

/// How many resource changes a slow session may fall behind before it is
/// told "everything you subscribed to changed" instead of each one.
const CHANGE_BACKLOG: usize = 1024;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Agent {
    pub connection: u64,
    pub identity: String,
    pub client_name: Option<String>,
    pub client_version: Option<String>,
    pub capabilities: Vec<String>,
    /// Unix milliseconds.
    pub connected_at: u64,
}

pub(crate) struct Presence {
    agents: Mutex<HashMap<u64, Agent>>,
    /// Per connection, the highest message seq of its identity's inbox this
    /// session has been shown or told about: messages after it that another
    /// session of the identity read are reported to it (`read_by_other_sessions`).
    /// One entry per live connection (bounded by `--max-connections`), set at
    /// join, removed at leave.
    looked: Mutex<HashMap<u64, u64>>,
    /// Bumped when a message for that identity is stored; long-polls wait on it.
    inboxes: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// URIs whose content changed (`aicp://shared-state`, `aicp://context/k`, `aicp://inbox/a`).
    changes: broadcast::Sender<Arc<str>>,
    next_connection: AtomicU64,
}

impl Default for Presence {
    fn default() -> Presence {
        Presence {
            agents: Mutex::default(),
            looked: Mutex::default(),
            inboxes: Mutex::default(),
            changes: broadcast::channel(CHANGE_BACKLOG).0,
            next_connection: AtomicU64::new(1),
        }
    }
}

impl Presence {
    pub(crate) fn next_connection(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn join(&self, agent: Agent) {
        self.agents.lock().unwrap().insert(agent.connection, agent);
    }

    /// Records what `initialize` said; returns the updated entry.
    pub(crate) fn update(&self, connection: u64, f: impl FnOnce(&mut Agent)) -> Option<Agent> {
        let mut agents = self.agents.lock().unwrap();
        let a = agents.get_mut(&connection)?;
        f(a);
        Some(a.clone())
    }

    pub(crate) fn leave(&self, connection: u64) {
        self.agents.lock().unwrap().remove(&connection);
        self.looked.lock().unwrap().remove(&connection);
    }

    /// Starts (or restarts, when `initialize` renamed the session) a session's
    /// "last looked" cursor at its identity's highest message seq.
    pub(crate) fn start_looking(&self, connection: u64, seq: u64) {
        self.looked.lock().unwrap().insert(connection, seq);
    }

    /// The session's "last looked" cursor; None for a connection that is not live.
    pub(crate) fn looked(&self, connection: u64) -> Option<u64> {
        self.looked.lock().unwrap().get(&connection).copied()
    }

    /// Moves the cursor forward to `seq` (never back); nothing for a connection that left.
    pub(crate) fn looked_through(&self, connection: u64, seq: u64) {
        if let Some(c) = self.looked.lock().unwrap().get_mut(&connection) {
            *c = (*c).max(seq);
        }
    }

    /// One connection's entry.
    pub(crate) fn agent(&self, connection: u64) -> Option<Agent> {
        self.agents.lock().unwrap().get(&connection).cloned()
    }

    /// How many sessions `identity` holds now.
    pub(crate) fn sessions_of(&self, identity: &str) -> usize {
        self.agents
            .lock()
            .unwrap()
            .values()
            .filter(|a| a.identity == identity)
            .count()
    }

    /// Every connection, ordered by identity then connection.
    pub(crate) fn list(&self) -> Vec<Agent> {
        let mut v: Vec<Agent> = self.agents.lock().unwrap().values().cloned().collect();
        v.sort_by(|a, b| {
            a.identity
                .cmp(&b.identity)
                .then(a.connection.cmp(&b.connection))
        });
        v
    }

    /// Connected identities other than `except`, each with the union of the
    /// capabilities its connections declared.
    pub(crate) fn candidates(&self, except: &str) -> Vec<Candidate> {
        let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in self.agents.lock().unwrap().values() {
            if a.identity == except {
                continue;
            }
            let caps = by_id.entry(a.identity.clone()).or_default();
            for c in &a.capabilities {
                if !caps.contains(c) {
                    caps.push(c.clone());
                }
            }
        }
        by_id
            .into_iter()
            .map(|(identity, capabilities)| Candidate {
                identity,
                capabilities,
            })
            .collect()
    }

    pub(crate) fn is_connected(&self, identity: &str) -> bool {
        self.agents
            .lock()
            .unwrap()
            .values()
            .any(|a| a.identity == identity)
    }

    pub(crate) fn capabilities_of(&self, identity: &str) -> Option<Vec<String>> {
        self.candidates("")
            .into_iter()
            .find(|c| c.identity == identity)
            .map(|c| c.capabilities)
    }

    pub(crate) fn capabilities_of_connection(&self, connection: u64) -> Option<Vec<String>> {
        self.agents
            .lock()
            .unwrap()
            .get(&connection)
            .map(|a| a.capabilities.clone())
    }

    /// A receiver that changes whenever `identity` gets a message.
    pub(crate) fn inbox_signal(&self, identity: &str) -> watch::Receiver<u64> {
        self.inboxes
            .lock()
            .unwrap()
            .entry(identity.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// A message for `identity` was stored or read: wake its long-polls (a
    /// read wakes the identity's other sessions, to tell them) and its subscribed sessions.
    pub(crate) fn inbox_changed(&self, identity: &str) {
        if let Some(tx) = self.inboxes.lock().unwrap().get(identity) {
            tx.send_modify(|n| *n += 1);
        }
        self.changed(&inbox_uri(identity));
    }

    pub(crate) fn changed(&self, uri: &str) {
        // No receivers is fine: nobody subscribed.
        let _ = self.changes.send(Arc::from(uri));
    }

    pub(crate) fn subscribe_changes(&self) -> broadcast::Receiver<Arc<str>> {
        self.changes.subscribe()
    }
}

pub(crate) const SHARED_STATE_URI: &str = "aicp://shared-state";
pub(crate) const CONTEXT_URI_PREFIX: &str = "aicp://context/";
pub(crate) const INBOX_URI_PREFIX: &str = "aicp://inbox/";

pub(crate) fn inbox_uri(identity: &str) -> String {
    format!("{INBOX_URI_PREFIX}{identity}")
}

pub(crate) fn context_uri(key: &str) -> String {
    format!("{CONTEXT_URI_PREFIX}{key}")
}
