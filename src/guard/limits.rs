//! The loop guard's limits: every one with its default, and the parser for
//! `--limit KEY=VALUE` and the config file's `[limits]` (keys are the field
//! names). docs/limits.md explains each. The guard (`mod.rs`) only reads them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Every limit, with its default. Field names are the keys of `[limits]` in
/// the config file and of `--limit KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Agent-to-agent handoffs one piece of work may go through. A chain
    /// longer than a handful of handoffs is almost always two agents passing
    /// a task back and forth; 8 still allows a relay through several agents and back.
    pub max_hops: u32,
    /// Direct replies in one conversation (a reply to whoever wrote the
    /// message answered is a turn, not a hop). A working thread between two
    /// people runs to dozens of turns; two agents answering each other
    /// without end reach 100 and stop. A reply that only acknowledges an
    /// acknowledgement is refused whatever the count.
    pub max_turns: u32,
    /// How much of a text delivered to this user a sent text must contain to
    /// be its forward (and continue its hop count), as a fraction: 0.8 lets a
    /// prefix, a quote or a few edited words through as the same message; 1.0
    /// counts only verbatim copies; 0 turns recognising forwards off (then
    /// only `reply_to` and the like continue a count). docs/limits.md.
    pub forward_match: f64,
    /// Seconds a call stays valid. A call queued longer than this (during a
    /// reconnect) is stale: the model has moved on, so it is dropped, never sent late.
    #[serde(with = "secs")]
    pub call_ttl: Duration,
    /// Identical calls (same tool, same arguments) allowed per `repeat_window`.
    /// A model that retries the same call more than five times a minute is looping.
    pub repeat_limit: u32,
    /// The same for tools the hub declares read-only (`readOnlyHint`): asking
    /// again whether a colleague answered is how a network is waited on, not a
    /// loop, so by default reads are not counted (0). Set a number to count
    /// them again; rates and the session budget apply to reads either way.
    pub repeat_reads: u32,
    #[serde(with = "secs")]
    pub repeat_window: Duration,
    /// Calls per rolling minute, all tools together: two a second sustained is
    /// more than a model acting through a host usefully makes.
    pub calls_per_minute: u32,
    /// Calls per rolling minute to any one tool. 90, not 60: a host that
    /// polls an inbox once a second sits exactly at 60, and network jitter
    /// would refuse every minute's sixty-first call.
    pub tool_calls_per_minute: u32,
    /// Calls waiting for the hub at once; the benchmark's 16 in flight pass.
    pub max_in_flight: u32,
    /// Calls in one session (one run of `serve`); a runaway agent that stays
    /// under every rate still stops here. 0 means no budget.
    pub session_budget: u64,
    /// Consecutive hub failures (errors, timeouts, lost connections) that open the breaker.
    pub breaker_failures: u32,
    /// Seconds the open breaker fails calls fast before letting one probe through.
    #[serde(with = "secs")]
    pub breaker_cooldown: Duration,
    /// Seconds a `*/list` answer is reused for identical requests: a known host
    /// bug sends hundreds of `tools/list` a second. 0 turns the cache off.
    #[serde(with = "secs")]
    pub list_cache: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_hops: 8,
            max_turns: 100,
            forward_match: aicp_proto::tracking::CONTAINMENT,
            call_ttl: Duration::from_secs(300),
            repeat_limit: 5,
            repeat_reads: 0,
            repeat_window: Duration::from_secs(60),
            calls_per_minute: 120,
            tool_calls_per_minute: 90,
            max_in_flight: 16,
            session_budget: 10_000,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            list_cache: Duration::from_secs(2),
        }
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LimitError(String);

impl Limits {
    /// Applies one `KEY=VALUE` override, as given to `--limit`.
    pub fn set(&mut self, assignment: &str) -> Result<(), LimitError> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| LimitError(format!("--limit takes KEY=VALUE, not {assignment:?}")))?;
        let mut table = toml_like(self);
        if !table.contains_key(key.trim()) {
            let keys: Vec<&String> = table.keys().collect();
            return Err(LimitError(format!(
                "unknown limit {key:?}; the limits are {keys:?}"
            )));
        }
        let value = value.trim();
        let parsed = match (value.parse::<u64>(), value.parse::<f64>()) {
            (Ok(n), _) => serde_json::Value::from(n),
            (_, Ok(x)) => serde_json::Value::from(x),
            _ => {
                return Err(LimitError(format!(
                    "limit {key} needs a number, not {value:?}"
                )));
            }
        };
        table.insert(key.trim().to_owned(), parsed);
        *self = serde_json::from_value(serde_json::Value::Object(table.into_iter().collect()))
            .map_err(|e| LimitError(format!("limit {key}: {e}")))?;
        Ok(())
    }
}

fn toml_like(limits: &Limits) -> std::collections::BTreeMap<String, serde_json::Value> {
    match serde_json::to_value(limits) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
        _ => Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_set_by_name_and_errors_name_the_keys() {
        let mut l = Limits::default();
        l.set("max_hops=3").unwrap();
        l.set("repeat_window = 2.5").unwrap();
        assert_eq!(l.max_hops, 3);
        assert_eq!(l.repeat_window, Duration::from_millis(2500));
        let e = l.set("max_hop=3").unwrap_err().to_string();
        assert!(e.contains("unknown limit") && e.contains("max_hops"), "{e}");
        assert!(
            l.set("max_hops=lots")
                .unwrap_err()
                .to_string()
                .contains("needs a number")
        );
        assert!(l.set("max_hops").is_err());
        assert!(l.set("max_hops=-1").is_err());
    }
}
