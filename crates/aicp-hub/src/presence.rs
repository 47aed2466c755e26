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
    /// Work routed to each identity since the hub started (route_to_agent and
    /// plan subtasks): equal matches go to whoever has had least. One counter
    /// per identity work was routed to, and only known identities get work.
    routed: Mutex<HashMap<String, usize>>,
}

impl Default for Presence {
    fn default() -> Presence {
        Presence {
            agents: Mutex::default(),
            looked: Mutex::default(),
            inboxes: Mutex::default(),
            changes: broadcast::channel(CHANGE_BACKLOG).0,
            next_connection: AtomicU64::new(1),
            routed: Mutex::default(),
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
                online: true,
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

    pub(crate) fn capabilities_of_connection(&self, connection: u64) -> Option<Vec<String>> {
        self.agents
            .lock()
            .unwrap()
            .get(&connection)
            .map(|a| a.capabilities.clone())
    }

    /// How much work was routed to `identity` since the hub started.
    pub(crate) fn routed_load(&self, identity: &str) -> usize {
        self.routed
            .lock()
            .unwrap()
            .get(identity)
            .copied()
            .unwrap_or(0)
    }

    /// Counts one piece of work routed to `identity`.
    pub(crate) fn routed_to(&self, identity: &str) {
        *self
            .routed
            .lock()
            .unwrap()
            .entry(identity.to_owned())
            .or_default() += 1;
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

/// What RFC 6570 simple expansion (`{key}`) leaves as it is: the unreserved
/// set `A-Z a-z 0-9 - . _ ~`. Every other byte of the key's UTF-8 is `%XX`.
const EXPANDED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The canonical URI of a shared-context key: the key percent-encoded as
/// RFC 6570 simple expansion does (upper-case hex). `resources/list`,
/// notifications and results use this form; reads and subscriptions accept
/// any spelling that percent-decodes to the key ([`canonical_uri`]).
pub(crate) fn context_uri(key: &str) -> String {
    format!(
        "{CONTEXT_URI_PREFIX}{}",
        percent_encoding::utf8_percent_encode(key, EXPANDED)
    )
}

/// Decodes `%XX` escapes (either hex case); None when the bytes are not
/// UTF-8. The inverse of [`context_uri`]'s encoding; a `%` not followed by two
/// hex digits stays as it is.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

/// The one spelling of a resource URI that change notifications use: a
/// context key's URI in its canonical encoding, any other URI as it is.
pub(crate) fn canonical_uri(uri: &str) -> String {
    match uri
        .strip_prefix(CONTEXT_URI_PREFIX)
        .and_then(percent_decode)
    {
        Some(key) if !key.is_empty() => context_uri(&key),
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_uris_are_percent_encoded_and_decode_back() {
        let key = "team notes/2025 é~x";
        let uri = context_uri(key);
        assert_eq!(uri, "aicp://context/team%20notes%2F2025%20%C3%A9~x");
        let part = uri.strip_prefix(CONTEXT_URI_PREFIX).unwrap();
        assert_eq!(percent_decode(part).as_deref(), Some(key));
        assert_eq!(percent_decode("a%2fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("plain key").as_deref(), Some("plain key"));
        assert_eq!(percent_decode("%FF"), None);
        for spelling in [
            "aicp://context/team notes/2025 é~x",
            "aicp://context/team%20notes%2f2025%20%c3%a9~x",
            uri.as_str(),
        ] {
            assert_eq!(canonical_uri(spelling), uri, "{spelling}");
        }
        assert_eq!(canonical_uri("aicp://shared-state"), "aicp://shared-state");
    }
}
