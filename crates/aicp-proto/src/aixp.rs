//! AIXP on the wire, for both ends: the envelope every relayed call and
//! delivered message carries (`_meta["aicp/aixp"]`: id, hop count, origin,
//! expiry), the status codes that classify failures, and the one rule for the
//! next hop. The bridge's loop guard decides with it; the hub stamps stored
//! messages with it. Pure: time is passed in.

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    #[serde(default)]
    pub version: String,
    pub id: String,
    pub hops: u32,
    pub origin: String,
    /// Unix milliseconds after which the message must not be delivered or acted on.
    pub expires_at: u64,
}

/// An envelope as a request carries it, every field optional (a host calling
/// a hub directly sends none; a sloppy peer sends part of one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Incoming {
    pub id: Option<String>,
    pub hops: Option<u32>,
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
            origin: self.origin.clone().unwrap_or_else(|| sender.to_owned()),
            expires_at: self.expires_at.map_or(own_expiry, |e| e.min(own_expiry)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("AIXP hop limit: this message would make hop {hops}, the hub allows at most {max}")]
    HopLimit { hops: u32, max: u32 },
    #[error("AIXP envelope already expired (expiresAt {expires_at} <= now {now})")]
    Expired { expires_at: u64, now: u64 },
}

/// The envelope for a message this hub stores: one hop more than the
/// caller's, the caller's origin (else the sender), expiry the sooner of the
/// caller's and the hub's TTL.
pub fn next_envelope(
    incoming: &Incoming,
    id: String,
    sender: &str,
    now_ms: u64,
    ttl_ms: u64,
    max_hops: u32,
) -> Result<Envelope, Refused> {
    // The call is itself a step (hop 0 when it carries no envelope); the message stored is the next.
    let call = Incoming {
        hops: Some(incoming.hops.unwrap_or(0)),
        ..incoming.clone()
    };
    let envelope = call.next(id, sender, now_ms, ttl_ms);
    if envelope.hops > max_hops {
        return Err(Refused::HopLimit {
            hops: envelope.hops,
            max: max_hops,
        });
    }
    if envelope.expires_at <= now_ms {
        return Err(Refused::Expired {
            expires_at: envelope.expires_at,
            now: now_ms,
        });
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_hop_without_caller_envelope() {
        let e = next_envelope(&Incoming::default(), "m1".into(), "alice", 1000, 500, 16).unwrap();
        assert_eq!(e.hops, 1);
        assert_eq!(e.origin, "alice");
        assert_eq!(e.expires_at, 1500);
        assert_eq!(e.version, "aixp/1");
    }

    #[test]
    fn continues_the_callers_envelope() {
        let params = json!({"_meta": {"aicp/aixp": {"version": "aixp/1", "id": "x", "hops": 3, "origin": "carol", "expiresAt": 1200}}});
        let inc = Incoming::from_params(&params);
        let e = next_envelope(&inc, "m2".into(), "alice", 1000, 500, 16).unwrap();
        assert_eq!(
            (e.hops, e.origin.as_str(), e.expires_at),
            (4, "carol", 1200)
        );
        // The hub's TTL wins when it is sooner.
        let e = next_envelope(&inc, "m3".into(), "alice", 1000, 100, 16).unwrap();
        assert_eq!(e.expires_at, 1100);
    }

    #[test]
    fn hop_cap_and_expiry_refuse() {
        let inc = Incoming {
            hops: Some(16),
            ..Default::default()
        };
        let err = next_envelope(&inc, "m".into(), "a", 0, 10, 16).unwrap_err();
        assert_eq!(err, Refused::HopLimit { hops: 17, max: 16 });
        assert!(err.to_string().contains("at most 16"));
        let inc = Incoming {
            expires_at: Some(5),
            ..Default::default()
        };
        assert!(matches!(
            next_envelope(&inc, "m".into(), "a", 10, 10, 16),
            Err(Refused::Expired { .. })
        ));
    }
}
