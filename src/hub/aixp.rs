//! The AIXP envelope a delivered message carries, so loop limits see hops
//! across agents. The envelope, its `_meta` key (`aicp/aixp`) and the status
//! codes are the bridge's loop guard's ([`crate::guard`]): one wire format for
//! both ends. What is the hub's own is the next hop. Pure: time is passed in.

use serde_json::Value;

pub use crate::guard::Envelope;
use crate::guard::{AIXP_VERSION, ENVELOPE_KEY};

/// Default hub-side cap on hops: a message that would travel further is refused.
pub const DEFAULT_MAX_HOPS: u32 = 16;

/// What the caller's own envelope said, all fields optional (a host calling
/// the hub directly sends none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Incoming {
    pub hops: Option<u32>,
    pub origin: Option<String>,
    pub expires_at: Option<u64>,
}

impl Incoming {
    /// Reads `params._meta["aicp/aixp"]`; wrong-typed fields count as absent.
    pub fn from_params(params: &Value) -> Incoming {
        let Some(env) = params.pointer("/_meta").and_then(|m| m.get(ENVELOPE_KEY)) else {
            return Incoming::default();
        };
        Incoming {
            hops: env
                .get("hops")
                .and_then(Value::as_u64)
                .map(|h| h.min(u64::from(u32::MAX)) as u32),
            origin: env.get("origin").and_then(Value::as_str).map(str::to_owned),
            expires_at: env.get("expiresAt").and_then(Value::as_u64),
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
    let hops = incoming.hops.unwrap_or(0).saturating_add(1);
    if hops > max_hops {
        return Err(Refused::HopLimit {
            hops,
            max: max_hops,
        });
    }
    let hub_expiry = now_ms.saturating_add(ttl_ms);
    let expires_at = incoming
        .expires_at
        .map_or(hub_expiry, |e| e.min(hub_expiry));
    if expires_at <= now_ms {
        return Err(Refused::Expired {
            expires_at,
            now: now_ms,
        });
    }
    Ok(Envelope {
        version: AIXP_VERSION.into(),
        id,
        hops,
        origin: incoming.origin.clone().unwrap_or_else(|| sender.to_owned()),
        expires_at,
    })
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
