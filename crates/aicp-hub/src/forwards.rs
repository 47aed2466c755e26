//! What each person received lately, to recognise a forward: a message whose
//! text carries one its sender received continues that message's hop count,
//! whether or not it names it (`aicp_proto::tracking` decides "carries").
//! The hub sees every message, so this holds for agents that reach it without
//! the bridge too. In memory, filled from the store the first time a sender
//! sends after a start, so a restart forgets nothing still unexpired.

use std::collections::HashMap;
use std::sync::Mutex;

use aicp_proto::aixp::Envelope;
use aicp_proto::tracking::Tracker;

/// Received texts kept per identity: a forward is of something received
/// lately. 64 sketches of at most 1 KiB each: 64 KiB per identity at worst.
pub const PER_IDENTITY: usize = 64;

/// Identities tracked at once; past it the trackers start over (each refills
/// from the store on its next send).
pub const MAX_IDENTITIES: usize = 4096;

#[derive(Default)]
pub struct Received {
    by_identity: Mutex<HashMap<String, Tracker<Envelope>>>,
}

impl Received {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracker<Envelope>>> {
        self.by_identity.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `identity`'s tracker is in memory (else load it with [`Received::load`]).
    pub fn is_loaded(&self, identity: &str) -> bool {
        self.lock().contains_key(identity)
    }

    /// Starts `identity`'s tracker from messages it received, oldest first.
    pub fn load<'a>(
        &self,
        identity: &str,
        received: impl IntoIterator<Item = (&'a str, &'a Envelope)>,
    ) {
        let mut tracker = Tracker::with_capacity(PER_IDENTITY);
        for (text, envelope) in received {
            tracker.remember(text, envelope.clone());
        }
        let mut map = self.lock();
        if map.len() >= MAX_IDENTITIES && !map.contains_key(identity) {
            map.clear();
        }
        map.insert(identity.to_owned(), tracker);
    }

    /// A message was stored for `to`. Only a loaded tracker is updated: one
    /// not yet loaded will read this message from the store.
    pub fn delivered(&self, to: &str, text: &str, envelope: &Envelope) {
        if let Some(tracker) = self.lock().get_mut(to) {
            tracker.remember(text, envelope.clone());
        }
    }

    /// The live message `sender` received that `text` passes on, if any (of
    /// several wrappings of one text, the furthest along).
    pub fn forwarded(&self, sender: &str, text: &str, now_ms: u64) -> Option<Envelope> {
        let map = self.lock();
        map.get(sender)?
            .forwards_of(text)
            .into_iter()
            .filter(|e| e.expires_at > now_ms)
            .max_by_key(|e| e.hops)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_is_found_among_what_the_sender_received_only() {
        let r = Received::default();
        let text = "Please review the release plan for version two and pass it on to the team";
        let env = Envelope {
            id: "m1".into(),
            hops: 3,
            expires_at: 100,
            ..Envelope::default()
        };
        assert!(!r.is_loaded("bob"));
        r.load("bob", [(text, &env)]);
        r.load("carol", []);
        assert_eq!(
            r.forwarded("bob", &format!("FYI: {text}"), 50)
                .map(|e| e.hops),
            Some(3)
        );
        assert!(
            r.forwarded("carol", text, 50).is_none(),
            "carol never received it"
        );
        assert!(r.forwarded("bob", text, 100).is_none(), "expired");
        r.delivered("carol", text, &env);
        assert!(r.forwarded("carol", text, 50).is_some());
        r.delivered("dave", text, &env);
        assert!(
            !r.is_loaded("dave"),
            "an unloaded tracker is left to the store"
        );
    }
}
