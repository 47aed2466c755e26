//! AIXP on the wire, for both ends: the envelope every relayed call and
//! delivered message carries (`_meta["aicp/aixp"]`: id, hop count,
//! conversation turns, origin, expiry), the status codes that classify
//! failures, and the one rule for the next step. The bridge's loop guard
//! decides with it; the hub stamps stored messages with it. Pure: time is passed in.
//!
//! Two counts, because two things repeat. A **hop** is a handoff of a piece of
//! work: a new message, a forward, a reply to someone other than the person
//! who wrote. A **turn** is a direct reply to the person who wrote: a
//! conversation, which may go on much longer than a chain of handoffs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `_meta` key of the AIXP envelope, in `tools/call` params and in
/// messages a hub delivers.
pub const ENVELOPE_KEY: &str = "aicp/aixp";

/// The `_meta` key of a refusal's structured detail in its tool result.
pub const REFUSAL_KEY: &str = "aicp/guard";

pub const AIXP_VERSION: &str = "aixp/1";

/// The wall clock as envelopes measure it: Unix milliseconds (expiry crosses
/// machines, so it is wall time, not monotonic). 0 if the clock is before 1970.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// AIXP status codes (docs/limits.md has the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AixpStatus(pub u16);

impl std::fmt::Display for AixpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl AixpStatus {
    /// Connected and working.
    pub const OK: AixpStatus = AixpStatus(5001);
    /// A call relayed and answered.
    pub const DELIVERED: AixpStatus = AixpStatus(5002);
    pub const HUB_DISCONNECTED: AixpStatus = AixpStatus(5003);
    pub const IDENTIFICATION: AixpStatus = AixpStatus(5004);
    /// Timeout, rate or loop limit.
    pub const COMMUNICATION: AixpStatus = AixpStatus(5005);
    pub const DATA_FORMAT: AixpStatus = AixpStatus(5006);
    pub const ACCESS: AixpStatus = AixpStatus(5007);
    pub const CONNECTION_LIMIT: AixpStatus = AixpStatus(5008);
    pub const UNEXPECTED_DISCONNECT: AixpStatus = AixpStatus(5009);
}

/// The AIXP envelope carried in `_meta["aicp/aixp"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    #[serde(default)]
    pub version: String,
    pub id: String,
    pub hops: u32,
    /// Direct replies in a row between the same two agents (0 for a handoff).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub turns: u32,
    pub origin: String,
    /// Unix milliseconds after which the message must not be delivered or acted on.
    pub expires_at: u64,
    /// Who handed this work on, oldest first: one name per hop, at most
    /// [`TRAIL_MAX`] (the oldest dropped), so a refusal can say where it went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trail: Vec<String>,
    /// When the chain began, Unix milliseconds (0: unknown).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub started_at: u64,
}

/// Names a trail keeps: enough to show a loop, bounded whatever the hop limit.
pub const TRAIL_MAX: usize = 16;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

impl Envelope {
    /// `alice → bob → alice → …` (then `next`, when given): where this work
    /// has been, for a refusal a model and its user can read.
    pub fn describe_trail(&self, next: Option<&str>) -> String {
        let mut names: Vec<&str> = self.trail.iter().map(String::as_str).collect();
        names.extend(next);
        if self.hops as usize > self.trail.len() && !names.is_empty() {
            names.insert(0, "…");
        }
        names.join(" → ")
    }
}

/// An envelope as a request carries it, every field optional (a host calling
/// a hub directly sends none; a sloppy peer sends part of one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Incoming {
    pub id: Option<String>,
    pub hops: Option<u32>,
    pub turns: Option<u32>,
    pub origin: Option<String>,
    pub expires_at: Option<u64>,
}

impl Incoming {
    /// The one reader of `params._meta["aicp/aixp"]`, for both ends; wrong-typed
    /// fields count as absent, so a partial envelope still carries what it has.
    pub fn from_params(params: &Value) -> Incoming {
        let Some(env) = params.pointer("/_meta").and_then(|m| m.get(ENVELOPE_KEY)) else {
            return Incoming::default();
        };
        Incoming {
            id: env.get("id").and_then(Value::as_str).map(str::to_owned),
            hops: env
                .get("hops")
                .and_then(Value::as_u64)
                .map(|h| h.min(u64::from(u32::MAX)) as u32),
            turns: env
                .get("turns")
                .and_then(Value::as_u64)
                .map(|t| t.min(u64::from(u32::MAX)) as u32),
            origin: env.get("origin").and_then(Value::as_str).map(str::to_owned),
            expires_at: env.get("expiresAt").and_then(Value::as_u64),
        }
    }

    /// The one next-hop rule: the step after this one is one hop more (a
    /// fresh chain, with no hop count, starts at 0), keeps the origin (else
    /// `sender` starts one), and expires at the sooner of this one's expiry
    /// and `now + ttl`. The caller checks the result against its limits.
    pub fn next(&self, id: String, sender: &str, now_ms: u64, ttl_ms: u64) -> Envelope {
        let own_expiry = now_ms.saturating_add(ttl_ms);
        Envelope {
            version: AIXP_VERSION.into(),
            id,
            hops: self.hops.map_or(0, |h| h.saturating_add(1)),
            turns: 0,
            origin: self.origin.clone().unwrap_or_else(|| sender.to_owned()),
            expires_at: self.expires_at.map_or(own_expiry, |e| e.min(own_expiry)),
            ..Envelope::default()
        }
    }
}

/// How a new message continues the one it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Work handed on: a new chain, a forward, a reply to a third party. One hop more.
    Handoff,
    /// A direct reply to the person who wrote the answered message: the same
    /// hop count, one conversation turn more.
    Turn,
}

/// Whether a reply from `sender` to `to`, answering a message `parent_from`
/// sent to `parent_to`, is a conversation turn: it goes back to whoever wrote
/// the answered message, from whoever received it. Names compare as the hub
/// resolves them: trimmed, case-insensitively.
pub fn step_of(parent_from: &str, parent_to: &str, sender: &str, to: &str) -> Step {
    if same_agent(parent_from, to) && same_agent(parent_to, sender) {
        Step::Turn
    } else {
        Step::Handoff
    }
}

/// Whether two names address the same agent, as the hub resolves a
/// recipient: trimmed, case-insensitively.
pub fn same_agent(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// The hop and turn counts a step after `hops`/`turns` makes.
pub fn counts_after(hops: u32, turns: u32, step: Step) -> (u32, u32) {
    match step {
        Step::Handoff => (hops.saturating_add(1), 0),
        Step::Turn => (hops, turns.saturating_add(1)),
    }
}

/// `HH:MM UTC` of a Unix-millisecond time, for refusals ("first sent at 10:02 UTC").
pub fn clock_time(ms: u64) -> String {
    let secs = ms / 1000 % 86_400;
    format!("{:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

/// The bounds the hub holds every stored message to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_hops: u32,
    pub max_turns: u32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error(
        "AIXP hop limit: this message would make hop {hops}, the hub allows at most {max}. \
         The work it carries has been handed between agents too often{trail}: do not forward it again; \
         finish it yourself or report back to your user"
    )]
    HopLimit {
        hops: u32,
        max: u32,
        /// ` (alice → bob → …, first sent …)`, or empty.
        trail: String,
    },
    #[error(
        "conversation limit: this reply would be turn {turns} of one back-and-forth, the hub allows at most {max}. \
         Stop replying in this thread and report to your user what was agreed"
    )]
    TurnLimit { turns: u32, max: u32 },
    #[error("AIXP envelope already expired (expiresAt {expires_at} <= now {now})")]
    Expired { expires_at: u64, now: u64 },
}

/// The envelope for a message this hub stores.
///
/// Counts: the caller's envelope (hop 0 when it carries none) and the
/// message it answers (`parent`, when the hub has it), whichever is further
/// along, then one `step`. Origin: the caller's, else the parent's, else the
/// sender. Expiry: the message is kept `retention_ms` from now, whatever the
/// call's own expiry: a call's time-to-live bounds how long the *call* may
/// wait, not how long a colleague has to read the message. A call that has
/// already expired is refused.
#[allow(clippy::too_many_arguments)]
pub fn next_envelope(
    incoming: &Incoming,
    parent: Option<&Envelope>,
    step: Step,
    id: String,
    sender: &str,
    now_ms: u64,
    retention_ms: u64,
    bounds: Bounds,
) -> Result<Envelope, Refused> {
    if let Some(expires_at) = incoming.expires_at
        && expires_at <= now_ms
    {
        return Err(Refused::Expired {
            expires_at,
            now: now_ms,
        });
    }
    let parent_hops = parent.map_or(0, |p| p.hops);
    let hops = incoming.hops.unwrap_or(0).max(parent_hops);
    // A turn continues the parent's count; a caller's own envelope may be further along.
    let turns = incoming
        .turns
        .unwrap_or(0)
        .max(parent.map_or(0, |p| p.turns));
    let (hops, turns) = counts_after(hops, turns, step);
    if hops > bounds.max_hops {
        let trail = parent.map_or_else(String::new, |p| {
            format!(
                " ({}, first sent at {})",
                p.describe_trail(Some(sender)),
                clock_time(p.started_at)
            )
        });
        return Err(Refused::HopLimit {
            hops,
            max: bounds.max_hops,
            trail,
        });
    }
    if turns > bounds.max_turns {
        return Err(Refused::TurnLimit {
            turns,
            max: bounds.max_turns,
        });
    }
    let origin = incoming
        .origin
        .clone()
        .or_else(|| parent.map(|p| p.origin.clone()))
        .unwrap_or_else(|| sender.to_owned());
    let mut trail = parent.map(|p| p.trail.clone()).unwrap_or_default();
    if step == Step::Handoff {
        trail.push(sender.to_owned());
        if trail.len() > TRAIL_MAX {
            trail.drain(..trail.len() - TRAIL_MAX);
        }
    }
    let started_at = parent
        .map(|p| p.started_at)
        .filter(|&t| t > 0)
        .unwrap_or(now_ms);
    Ok(Envelope {
        version: AIXP_VERSION.into(),
        id,
        hops,
        turns,
        origin,
        expires_at: now_ms.saturating_add(retention_ms),
        trail,
        started_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BOUNDS: Bounds = Bounds {
        max_hops: 16,
        max_turns: 100,
    };

    fn stored(
        incoming: &Incoming,
        parent: Option<&Envelope>,
        step: Step,
    ) -> Result<Envelope, Refused> {
        next_envelope(
            incoming,
            parent,
            step,
            "m".into(),
            "alice",
            1000,
            500,
            BOUNDS,
        )
    }

    #[test]
    fn first_hop_without_caller_envelope() {
        let e = stored(&Incoming::default(), None, Step::Handoff).unwrap();
        assert_eq!((e.hops, e.turns), (1, 0));
        assert_eq!(e.origin, "alice");
        assert_eq!(e.expires_at, 1500);
        assert_eq!(e.version, "aixp/1");
        // turns 0 stays off the wire, so older peers read the envelope unchanged.
        assert!(!serde_json::to_string(&e).unwrap().contains("turns"));
    }

    #[test]
    fn continues_the_callers_envelope_but_keeps_the_message_for_the_retention() {
        let params = json!({"_meta": {"aicp/aixp": {"version": "aixp/1", "id": "x", "hops": 3, "origin": "carol", "expiresAt": 1200}}});
        let inc = Incoming::from_params(&params);
        let e = stored(&inc, None, Step::Handoff).unwrap();
        assert_eq!((e.hops, e.origin.as_str()), (4, "carol"));
        // The call's 200 ms left do not become the stored message's lifetime.
        assert_eq!(e.expires_at, 1500);
    }

    #[test]
    fn a_turn_keeps_the_hops_and_counts_the_conversation() {
        let parent = Envelope {
            version: AIXP_VERSION.into(),
            id: "p".into(),
            hops: 3,
            turns: 7,
            origin: "bob".into(),
            expires_at: 9,
            trail: vec!["bob".into(), "carol".into(), "bob".into()],
            started_at: 600_000,
        };
        let e = stored(&Incoming::default(), Some(&parent), Step::Turn).unwrap();
        assert_eq!(e.trail, parent.trail, "a turn hands nothing on");
        assert_eq!((e.hops, e.turns, e.origin.as_str()), (3, 8, "bob"));
        let e = stored(&Incoming::default(), Some(&parent), Step::Handoff).unwrap();
        assert_eq!((e.hops, e.turns), (4, 0));
        assert_eq!(e.trail, ["bob", "carol", "bob", "alice"]);
        assert_eq!(e.started_at, 600_000, "the chain's start is kept");
        assert_eq!(
            e.describe_trail(Some("dave")),
            "bob → carol → bob → alice → dave"
        );
        // The caller's envelope (a bridge that saw the parent) agrees or is further along.
        let inc = Incoming {
            hops: Some(3),
            turns: Some(9),
            ..Default::default()
        };
        assert_eq!(stored(&inc, Some(&parent), Step::Turn).unwrap().turns, 10);
        let at_limit = Envelope {
            turns: 100,
            ..parent
        };
        assert_eq!(
            stored(&Incoming::default(), Some(&at_limit), Step::Turn).unwrap_err(),
            Refused::TurnLimit {
                turns: 101,
                max: 100
            }
        );
    }

    #[test]
    fn who_answers_whom_decides_the_step() {
        assert_eq!(step_of("alice", "bob", "bob", "Alice "), Step::Turn);
        assert_eq!(step_of("alice", "bob", "bob", "carol"), Step::Handoff);
        assert_eq!(step_of("alice", "bob", "carol", "alice"), Step::Handoff);
        assert_eq!(counts_after(2, 5, Step::Handoff), (3, 0));
        assert_eq!(counts_after(2, 5, Step::Turn), (2, 6));
    }

    #[test]
    fn hop_cap_and_expiry_refuse() {
        let inc = Incoming {
            hops: Some(16),
            ..Default::default()
        };
        let err = stored(&inc, None, Step::Handoff).unwrap_err();
        assert_eq!(
            err,
            Refused::HopLimit {
                hops: 17,
                max: 16,
                trail: String::new()
            }
        );
        assert!(err.to_string().contains("at most 16"));
        // Handed on by a parent: the refusal says where the work has been, and since when.
        let parent = Envelope {
            hops: 16,
            trail: (0..TRAIL_MAX)
                .map(|i| ["bob", "carol"][i % 2].to_owned())
                .collect(),
            started_at: 36_120_000,
            ..Envelope::default()
        };
        let err = stored(&Incoming::default(), Some(&parent), Step::Handoff).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("(bob → carol → "), "{text}");
        assert!(
            text.contains("carol → alice, first sent at 10:02 UTC)"),
            "{text}"
        );
        let longer = Envelope { hops: 40, ..parent };
        assert!(longer.describe_trail(None).starts_with("… → bob"));
        let mut e = stored(
            &Incoming::default(),
            Some(&Envelope { hops: 3, ..longer }),
            Step::Handoff,
        )
        .unwrap();
        assert_eq!(e.trail.len(), TRAIL_MAX, "the trail stays bounded");
        e.trail.clear();
        assert_eq!(e.describe_trail(None), "");
        let inc = Incoming {
            expires_at: Some(1000),
            ..Default::default()
        };
        assert!(matches!(
            stored(&inc, None, Step::Handoff),
            Err(Refused::Expired { .. })
        ));
    }
}
