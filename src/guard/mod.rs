//! The loop guard: decides, for each `tools/call` the host makes, whether it
//! may go to the hub, after the AI-Exchange Protocol (AIXP): every relayed
//! call carries an envelope (message id, hop count, origin, expiry), and
//! calls that loop, repeat, flood or outlive their expiry are refused with a
//! reason the model can read.
//!
//! Pure: no I/O and no clock of its own. The relay passes the time in
//! ([`Now`]) and reports outcomes back, so every limit is unit-tested
//! deterministically. docs/limits.md explains each limit and its default.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use aicp_proto::aixp::{AixpStatus, Envelope, Incoming, clock_time, same_agent};
use aicp_proto::conversation;
use aicp_proto::tracking::Tracker;

pub mod envelope;
pub mod limits;

pub use limits::{LimitError, Limits};
use serde::Serialize;
use tokio::time::Instant;

/// The time as the guard sees it: monotonic for windows, wall clock (Unix
/// milliseconds) for envelope expiry, which crosses machines.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall_ms: u64,
}

impl Now {
    pub fn current() -> Now {
        Now {
            mono: Instant::now(),
            wall_ms: aicp_proto::aixp::now_ms(),
        }
    }
}

/// What the guard needs to know about one call.
#[derive(Debug)]
pub struct Call<'a> {
    pub tool: &'a str,
    /// Hash of the tool and its arguments in canonical form ([`fingerprint`]).
    pub fingerprint: u64,
    /// An envelope the host's call already carried (an agent relaying for another).
    pub incoming: Incoming,
    /// Ids of messages this call answers or forwards (`reply_to` and the like).
    pub refers_to: Vec<String>,
    /// The recipient the call names (`to`), if any: a reply to whoever wrote
    /// the answered message is a conversation turn, not a handoff.
    pub to: Option<&'a str>,
    /// The text the call sends (`text`, `message` or `task`), if any: a
    /// text that substantially contains one delivered to this user passes that
    /// message on, and continues its hop count.
    pub text: Option<&'a str>,
    /// The hub declared the tool read-only (`readOnlyHint` in its `tools/list`):
    /// repeats are then held to `repeat_reads`, not `repeat_limit`. Rates still apply.
    pub read_only: bool,
}

/// A refused call: what the model reads, and the structured detail.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    pub aixp_status: AixpStatus,
    /// The limit's key, as in `[limits]`.
    pub limit: &'static str,
    #[serde(serialize_with = "whole_if_whole")]
    pub limit_value: f64,
    #[serde(serialize_with = "whole_if_whole")]
    pub current: f64,
    /// Milliseconds until the call could pass again, when that is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_in_ms: Option<u64>,
    #[serde(skip)]
    pub message: String,
}

/// Counts read better as `5` than `5.0`; seconds keep their fraction.
fn whole_if_whole<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.fract() == 0.0 && *x >= 0.0 && *x < u64::MAX as f64 {
        s.serialize_u64(*x as u64)
    } else {
        s.serialize_f64(*x)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// How a relayed call ended, as far as the breaker is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The hub answered (a tool error with `isError` is still an answer).
    Answered,
    /// The hub failed: an internal error, a timeout, a lost connection.
    HubFailed,
    /// The host cancelled, or the call expired before it was sent.
    Abandoned,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Breaker {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe call is out; its outcome closes or reopens the breaker.
    HalfOpen,
}

/// Counters `status` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub calls_relayed: u64,
    pub calls_refused: u64,
    pub lists_from_cache: u64,
}

/// How many delivered-message ids the guard remembers to continue their hop counts.
const KNOWN_MESSAGES: usize = 4096;

/// What the guard keeps of a message the hub delivered to this user, by id
/// and by its text's fingerprint (one allocation, shared by both).
#[derive(Debug, Clone)]
struct Delivered {
    envelope: Envelope,
    from: String,
    /// The text was only thanks or an acknowledgement ([`conversation::is_courtesy`]).
    courtesy: bool,
}

pub struct Guard {
    limits: Limits,
    /// This bridge instance, the origin of the envelopes it starts.
    origin: String,
    next_seq: u64,
    /// Call times per fingerprint, for the repeat limit.
    repeats: HashMap<u64, VecDeque<Instant>>,
    /// The same calls in the order they were made, so that fingerprints whose
    /// calls all left the window are dropped in O(1) per call, not by a scan.
    repeat_order: VecDeque<(Instant, u64)>,
    /// Call times, all tools; and per tool.
    overall: VecDeque<Instant>,
    per_tool: HashMap<String, VecDeque<Instant>>,
    in_flight: u32,
    breaker: Breaker,
    /// Messages delivered to this user, by id; `known_order` oldest first for eviction.
    known: HashMap<String, Arc<Delivered>>,
    known_order: VecDeque<String>,
    /// The texts of messages delivered to this user, to recognise a forward
    /// that names no message id ([`aicp_proto::tracking`]).
    texts: Tracker<Arc<Delivered>>,
    stats: Stats,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Guard {
    pub fn new(limits: Limits, origin: String) -> Guard {
        Guard {
            limits,
            origin,
            next_seq: 0,
            repeats: HashMap::new(),
            repeat_order: VecDeque::new(),
            overall: VecDeque::new(),
            per_tool: HashMap::new(),
            in_flight: 0,
            breaker: Breaker::Closed { failures: 0 },
            known: HashMap::new(),
            known_order: VecDeque::new(),
            texts: Tracker::new(),
            stats: Stats::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Allow (with the envelope to send) or refuse one call. An allowed call
    /// counts as in flight until [`Guard::finished`] is told how it ended.
    pub fn check(&mut self, now: Now, call: &Call<'_>) -> Result<Envelope, Refusal> {
        let result = self.decide(now, call);
        match &result {
            Ok(_) => {
                self.record(now, call);
                self.stats.calls_relayed += 1;
            }
            Err(_) => self.stats.calls_refused += 1,
        }
        result
    }

    fn decide(&mut self, now: Now, call: &Call<'_>) -> Result<Envelope, Refusal> {
        let limits = &self.limits;

        // Loops across agents: continue the hop count of what this call carries or answers.
        let next = call.incoming.next(
            String::new(),
            &self.origin,
            now.wall_ms,
            limits.call_ttl.as_millis() as u64,
        );
        let answered = call
            .refers_to
            .iter()
            .filter_map(|id| self.known.get(id))
            .max_by_key(|m| m.envelope.hops);
        let mut hops = answered.map_or(next.hops, |a| a.envelope.hops.max(next.hops));
        // A text that carries one delivered to this user passes that message
        // on, named or not: its count goes on, and it is never a mere turn.
        // Only a call that may send is looked at: a read passes nothing on.
        let forwarded = call.text.filter(|_| !call.read_only).and_then(|t| {
            self.texts
                .forwards_at(t, limits.forward_match)
                .into_iter()
                .filter(|p| p.envelope.expires_at > now.wall_ms)
                .max_by_key(|p| p.envelope.hops)
        });
        if let Some(f) = forwarded {
            hops = hops.max(f.envelope.hops);
        }
        // A reply to whoever wrote is a turn of a conversation; anything else hands work on.
        let turn = answered
            .filter(|_| forwarded.is_none())
            .filter(|m| call.to.is_some_and(|to| same_agent(to, &m.from)));
        let turns = turn.map_or(0, |m| m.envelope.turns);
        if let Some(m) = turn {
            // A hub that does not count turns stores every reply one hop
            // further; the hops past max_hops then count as turns, so such a
            // conversation still ends.
            let turns = turns.max(hops.saturating_sub(limits.max_hops));
            if m.courtesy && call.text.is_some_and(conversation::is_courtesy) {
                return Err(refusal(
                    AixpStatus::COMMUNICATION,
                    "courtesy",
                    1.0,
                    2.0,
                    None,
                    format!(
                        "aicp-bridge did not send this: the message from {} you are answering only acknowledges, \
                         and so does your reply. The conversation has ended; an acknowledgement needs no answer. \
                         Go on with your task or report to the user.",
                        m.from
                    ),
                ));
            }
            if turns >= limits.max_turns {
                return Err(refusal(
                    AixpStatus::COMMUNICATION,
                    "max_turns",
                    limits.max_turns as f64,
                    (turns + 1) as f64,
                    None,
                    format!(
                        "aicp-bridge refused this reply: you and {} have answered each other {} times in this \
                         conversation, over the limit of {} (max_turns). Stop replying in this thread; tell the \
                         user what was agreed and what is still open.",
                        m.from,
                        turns + 1,
                        limits.max_turns
                    ),
                ));
            }
        } else if hops > limits.max_hops {
            let message = match forwarded {
                Some(f) => format!(
                    "aicp-bridge refused this call: its text is a message that has already been passed between \
                     agents {hops} times ({}), first sent by {} at {}, over the limit of {} (max_hops). \
                     Assistants are forwarding this request to each other instead of doing it. Do not send it \
                     on again: do the work yourself, or tell the user who asked for it and stop.",
                    f.envelope.describe_trail(Some("you")),
                    f.envelope.trail.first().unwrap_or(&f.from),
                    clock_time(f.envelope.started_at.max(1)),
                    limits.max_hops
                ),
                None => format!(
                    "aicp-bridge refused this call: the work it carries has already been handed between agents \
                     {hops} times, over the limit of {} (max_hops). This looks like agents passing a task back \
                     and forth. Do not forward or answer it again; finish the task yourself or report back to the user.",
                    limits.max_hops
                ),
            };
            return Err(refusal(
                AixpStatus::COMMUNICATION,
                "max_hops",
                limits.max_hops as f64,
                hops as f64,
                None,
                message,
            ));
        }
        if next.expires_at <= now.wall_ms {
            return Err(refusal(
                AixpStatus::COMMUNICATION,
                "call_ttl",
                limits.call_ttl.as_secs_f64(),
                0.0,
                None,
                "aicp-bridge refused this call: the message it relays has expired (its AIXP time-to-live ran out). \
                 Do not act on it; ask for a fresh request if the work is still wanted."
                    .to_owned(),
            ));
        }

        if let Breaker::Open { until } = self.breaker {
            if now.mono < until {
                let wait = until - now.mono;
                return Err(refusal(
                    AixpStatus::HUB_DISCONNECTED,
                    "breaker_failures",
                    limits.breaker_failures as f64,
                    limits.breaker_failures as f64,
                    Some(wait),
                    format!(
                        "aicp-bridge is not sending calls to the hub for {:.0} s: the hub failed {} times in a row \
                         (breaker_failures). Wait, then try once; do not retry in a loop.",
                        wait.as_secs_f64().ceil(),
                        limits.breaker_failures
                    ),
                ));
            }
            self.breaker = Breaker::HalfOpen;
        } else if self.breaker == Breaker::HalfOpen {
            return Err(refusal(
                AixpStatus::HUB_DISCONNECTED,
                "breaker_failures",
                limits.breaker_failures as f64,
                limits.breaker_failures as f64,
                None,
                "aicp-bridge is testing whether the hub has recovered with one call; wait for it before calling again."
                    .to_owned(),
            ));
        }

        if limits.session_budget > 0 && self.stats.calls_relayed >= limits.session_budget {
            return Err(refusal(
                AixpStatus::COMMUNICATION,
                "session_budget",
                limits.session_budget as f64,
                self.stats.calls_relayed as f64,
                None,
                format!(
                    "aicp-bridge refused this call: this session has used its budget of {} hub calls \
                     (session_budget). Stop and tell the user; a new session starts a new budget.",
                    limits.session_budget
                ),
            ));
        }

        if self.in_flight >= limits.max_in_flight {
            return Err(refusal(
                AixpStatus::CONNECTION_LIMIT,
                "max_in_flight",
                limits.max_in_flight as f64,
                self.in_flight as f64,
                None,
                format!(
                    "aicp-bridge refused this call: {} calls are already waiting for the hub (max_in_flight). \
                     Wait for some of them to finish before starting more.",
                    self.in_flight
                ),
            ));
        }

        let window = limits.repeat_window;
        // Reads repeat by nature (polling an inbox); only their own limit, if set, counts them.
        let (key, max) = if call.read_only {
            ("repeat_reads", limits.repeat_reads)
        } else {
            ("repeat_limit", limits.repeat_limit)
        };
        let repeats = self
            .repeats
            .get_mut(&call.fingerprint)
            .map(|q| prune(q, now.mono, window));
        if let Some((count, oldest)) = repeats
            && (max > 0 || !call.read_only)
            && count >= max as usize
        {
            let advice = if call.read_only {
                "Asking again this often will not make an answer come sooner: wait with the tool's own \
                 waiting argument if it has one (read_inbox's wait_ms), or do other work and come back later."
            } else {
                "Repeating it will not give a different result: change the arguments, try another approach, \
                 or ask the user."
            };
            return Err(refusal(
                AixpStatus::COMMUNICATION,
                key,
                max as f64,
                (count + 1) as f64,
                oldest.map(|t| (t + window).saturating_duration_since(now.mono)),
                format!(
                    "aicp-bridge refused this call: {} was called with exactly these arguments {} times in the last \
                     {} s, over the limit of {max} ({key}). {advice}",
                    call.tool,
                    count + 1,
                    window.as_secs_f64(),
                ),
            ));
        }

        let (count, oldest) = prune(&mut self.overall, now.mono, MINUTE);
        if count >= limits.calls_per_minute as usize {
            return Err(rate_refusal(
                "calls_per_minute",
                limits.calls_per_minute,
                count,
                oldest,
                now,
                "all tools",
                call.read_only,
            ));
        }
        if let Some(q) = self.per_tool.get_mut(call.tool) {
            let (count, oldest) = prune(q, now.mono, MINUTE);
            if count >= limits.tool_calls_per_minute as usize {
                return Err(rate_refusal(
                    "tool_calls_per_minute",
                    limits.tool_calls_per_minute,
                    count,
                    oldest,
                    now,
                    call.tool,
                    call.read_only,
                ));
            }
        }

        self.next_seq += 1;
        // A forward keeps the forwarded message's origin and expiry (the sooner of it and this call's).
        let (origin, expires_at) = match forwarded {
            Some(f) => (
                f.envelope.origin.clone(),
                next.expires_at.min(f.envelope.expires_at),
            ),
            None => (next.origin, next.expires_at),
        };
        Ok(Envelope {
            id: format!("{}-{}", self.origin, self.next_seq),
            hops,
            turns,
            origin,
            expires_at,
            ..next
        })
    }

    fn record(&mut self, now: Now, call: &Call<'_>) {
        self.in_flight += 1;
        self.repeats
            .entry(call.fingerprint)
            .or_default()
            .push_back(now.mono);
        self.overall.push_back(now.mono);
        self.per_tool
            .entry(call.tool.to_owned())
            .or_default()
            .push_back(now.mono);
        // Keep memory bounded by the window: forget calls that left it.
        self.repeat_order.push_back((now.mono, call.fingerprint));
        let window = self.limits.repeat_window;
        while let Some(&(at, fingerprint)) = self.repeat_order.front() {
            if now.mono.saturating_duration_since(at) < window {
                break;
            }
            self.repeat_order.pop_front();
            if let Some(q) = self.repeats.get_mut(&fingerprint)
                && prune(q, now.mono, window).0 == 0
            {
                self.repeats.remove(&fingerprint);
            }
        }
    }

    /// An allowed call ended.
    pub fn finished(&mut self, now: Now, outcome: Outcome) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.breaker = match (self.breaker, outcome) {
            (_, Outcome::Answered) => Breaker::Closed { failures: 0 },
            (Breaker::HalfOpen, Outcome::HubFailed) => self.open(now),
            (Breaker::Closed { failures }, Outcome::HubFailed)
                if failures + 1 >= self.limits.breaker_failures =>
            {
                self.open(now)
            }
            (Breaker::Closed { failures }, Outcome::HubFailed) => Breaker::Closed {
                failures: failures + 1,
            },
            // An abandoned probe proves nothing: let the next call probe.
            (Breaker::HalfOpen, Outcome::Abandoned) => Breaker::Open { until: now.mono },
            (state, _) => state,
        };
    }

    fn open(&self, now: Now) -> Breaker {
        Breaker::Open {
            until: now.mono + self.limits.breaker_cooldown,
        }
    }

    /// Whether a message with this envelope may still be delivered or acted on.
    pub fn is_live(envelope: &Envelope, now: Now) -> bool {
        envelope.expires_at > now.wall_ms
    }

    /// Remembers a message the hub delivered to this user (its counts, its
    /// sender, whether it only acknowledged), so that an answer to it continues
    /// its count as a turn or a hop.
    pub fn learn(&mut self, envelope: &Envelope, from: &str, text: &str) {
        let delivered = Arc::new(Delivered {
            envelope: envelope.clone(),
            from: from.to_owned(),
            courtesy: conversation::is_courtesy(text),
        });
        self.texts.remember(text, delivered.clone());
        if self.known.insert(envelope.id.clone(), delivered).is_none() {
            self.known_order.push_back(envelope.id.clone());
            if self.known_order.len() > KNOWN_MESSAGES
                && let Some(old) = self.known_order.pop_front()
            {
                self.known.remove(&old);
            }
        }
    }

    pub fn count_cached_list(&mut self) {
        self.stats.lists_from_cache += 1;
    }
}

/// Drops entries older than `window`; returns how many remain and the oldest.
fn prune(q: &mut VecDeque<Instant>, now: Instant, window: Duration) -> (usize, Option<Instant>) {
    while q
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) >= window)
    {
        q.pop_front();
    }
    (q.len(), q.front().copied())
}

fn refusal(
    status: AixpStatus,
    limit: &'static str,
    limit_value: f64,
    current: f64,
    resets_in: Option<Duration>,
    message: String,
) -> Refusal {
    Refusal {
        aixp_status: status,
        limit,
        limit_value,
        current,
        resets_in_ms: resets_in.map(|d| d.as_millis() as u64),
        message,
    }
}

fn rate_refusal(
    limit: &'static str,
    value: u32,
    count: usize,
    oldest: Option<Instant>,
    now: Now,
    what: &str,
    read: bool,
) -> Refusal {
    let resets = oldest.map(|t| (t + MINUTE).saturating_duration_since(now.mono));
    // A read called this often is someone waiting: say how to wait, not how to batch work.
    let advice = if read {
        "To wait for an answer, call it with its waiting argument (read_inbox's wait_ms) instead of more often."
    } else {
        "Batch work into fewer calls."
    };
    refusal(
        AixpStatus::COMMUNICATION,
        limit,
        value as f64,
        (count + 1) as f64,
        resets,
        format!(
            "aicp-bridge refused this call: {} calls to {what} in the last minute, over the limit of {value} ({limit}). \
             Slow down: wait {:.0} s before the next call. {advice}",
            count + 1,
            resets.unwrap_or_default().as_secs_f64().ceil()
        ),
    )
}

/// A call's identity for the repeat limit: the tool and its arguments in
/// canonical JSON (object keys sorted, so key order does not matter).
pub fn fingerprint(tool: &str, arguments: Option<&serde_json::Value>) -> u64 {
    let mut h = DefaultHasher::new();
    tool.hash(&mut h);
    // serde_json's Map keeps keys sorted (no preserve_order feature), so
    // to_string is canonical.
    arguments
        .map(|a| a.to_string())
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

/// The message ids a call answers or forwards: string values of `reply_to`,
/// `in_reply_to` or `message_id` in its arguments or in their `context` object.
pub fn referenced_messages(arguments: Option<&serde_json::Value>) -> Vec<String> {
    const KEYS: [&str; 3] = ["reply_to", "in_reply_to", "message_id"];
    let mut ids = Vec::new();
    let Some(args) = arguments.and_then(|a| a.as_object()) else {
        return ids;
    };
    let context = args.get("context").and_then(|c| c.as_object());
    for obj in std::iter::once(args).chain(context) {
        for key in KEYS {
            if let Some(serde_json::Value::String(id)) = obj.get(key) {
                ids.push(id.clone());
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use aicp_proto::aixp::AIXP_VERSION;

    struct Clock {
        start: Instant,
        wall0: u64,
    }

    impl Clock {
        fn new() -> Clock {
            Clock {
                start: Instant::now(),
                wall0: 1_700_000_000_000,
            }
        }
        fn at(&self, secs: f64) -> Now {
            let d = Duration::from_secs_f64(secs);
            Now {
                mono: self.start + d,
                wall_ms: self.wall0 + d.as_millis() as u64,
            }
        }
    }

    fn guard(limits: Limits) -> Guard {
        Guard::new(limits, "bridge-a".into())
    }

    fn call(tool: &str, n: u64) -> Call<'_> {
        Call {
            tool,
            fingerprint: fingerprint(tool, Some(&serde_json::json!({ "n": n }))),
            incoming: Incoming::default(),
            refers_to: vec![],
            to: None,
            text: None,
            read_only: false,
        }
    }

    fn delivered(id: &str, hops: u32, turns: u32, expires_at: u64) -> Envelope {
        Envelope {
            version: AIXP_VERSION.into(),
            id: id.into(),
            hops,
            turns,
            origin: "bridge-b".into(),
            expires_at,
            ..Envelope::default()
        }
    }

    fn unlimited() -> Limits {
        Limits {
            calls_per_minute: 1_000_000,
            tool_calls_per_minute: 1_000_000,
            repeat_limit: 1_000_000,
            max_in_flight: 1_000_000,
            session_budget: 0,
            ..Limits::default()
        }
    }

    fn allow_and_finish(g: &mut Guard, now: Now, c: &Call<'_>) -> Result<Envelope, Refusal> {
        let r = g.check(now, c);
        if r.is_ok() {
            g.finished(now, Outcome::Answered);
        }
        r
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_values() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"a":1,"b":{"x":[1,2],"y":"z"}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"b":{"y":"z","x":[1,2]},"a":1}"#).unwrap();
        let c: serde_json::Value =
            serde_json::from_str(r#"{"b":{"y":"z","x":[2,1]},"a":1}"#).unwrap();
        assert_eq!(fingerprint("t", Some(&a)), fingerprint("t", Some(&b)));
        assert_ne!(fingerprint("t", Some(&a)), fingerprint("t", Some(&c)));
        assert_ne!(fingerprint("t", Some(&a)), fingerprint("u", Some(&a)));
    }

    #[test]
    fn repeat_limit_exactly_at_one_over_and_sliding() {
        let clock = Clock::new();
        let mut g = guard(Limits {
            repeat_limit: 3,
            repeat_window: Duration::from_secs(10),
            ..unlimited()
        });
        let c = call("echo", 1);
        for i in 0..3 {
            assert!(
                allow_and_finish(&mut g, clock.at(i as f64), &c).is_ok(),
                "call {i} is within the limit"
            );
        }
        let r = allow_and_finish(&mut g, clock.at(3.0), &c).unwrap_err();
        assert_eq!(r.limit, "repeat_limit");
        assert_eq!(r.limit_value, 3.0);
        assert_eq!(r.current, 4.0);
        assert_eq!(r.aixp_status, AixpStatus::COMMUNICATION);
        assert_eq!(
            r.resets_in_ms,
            Some(7000),
            "the first call leaves the window at t=10"
        );
        assert!(
            r.message.contains("echo")
                && r.message.contains("4 times")
                && r.message.contains("limit of 3")
        );
        // Other arguments are another call.
        assert!(allow_and_finish(&mut g, clock.at(3.0), &call("echo", 2)).is_ok());
        // Just before the first call ages out: still refused; at 10 s: allowed (the window slid).
        assert!(allow_and_finish(&mut g, clock.at(9.999), &c).is_err());
        assert!(allow_and_finish(&mut g, clock.at(10.0), &c).is_ok());
        assert!(
            allow_and_finish(&mut g, clock.at(10.5), &c).is_err(),
            "t=1,2,10 fill the window again"
        );
        assert_eq!(g.stats().calls_refused, 3);
    }

    #[test]
    fn reads_repeat_freely_but_not_past_the_rates_and_writes_still_loop_out() {
        let clock = Clock::new();
        let mut g = guard(Limits::default());
        let poll = Call {
            read_only: true,
            ..call("read_inbox", 0)
        };
        // Once a second for three minutes, the same arguments: a wait, not a loop.
        for s in 0..180 {
            allow_and_finish(&mut g, clock.at(s as f64 * 1.0), &poll).unwrap();
        }
        // The same write six times in a minute is still refused, with the write's advice.
        let send = call("send_message", 1);
        for s in 0..5 {
            allow_and_finish(&mut g, clock.at(200.0 + s as f64), &send).unwrap();
        }
        let r = allow_and_finish(&mut g, clock.at(206.0), &send).unwrap_err();
        assert_eq!(
            (r.limit, r.limit_value, r.current),
            ("repeat_limit", 5.0, 6.0)
        );
        assert!(
            r.message.contains("will not give a different result"),
            "{}",
            r.message
        );
        // A tool declared read-only is still held to the per-tool rate (90 a minute).
        let mut g = guard(Limits::default());
        for i in 0..90 {
            allow_and_finish(&mut g, clock.at(300.0 + i as f64 * 0.01), &poll).unwrap();
        }
        let r = allow_and_finish(&mut g, clock.at(301.0), &poll).unwrap_err();
        assert_eq!(r.limit, "tool_calls_per_minute");
        assert!(r.message.contains("wait_ms"), "{}", r.message);
    }

    #[test]
    fn repeat_reads_makes_reads_count_again_with_advice_that_fits_a_read() {
        let clock = Clock::new();
        let mut g = guard(Limits {
            repeat_reads: 3,
            ..Limits::default()
        });
        let poll = Call {
            read_only: true,
            ..call("read_inbox", 0)
        };
        for s in 0..3 {
            allow_and_finish(&mut g, clock.at(s as f64), &poll).unwrap();
        }
        let r = allow_and_finish(&mut g, clock.at(3.0), &poll).unwrap_err();
        assert_eq!(
            (r.limit, r.limit_value, r.current),
            ("repeat_reads", 3.0, 4.0)
        );
        assert!(r.message.contains("wait_ms"), "{}", r.message);
        assert!(
            !r.message.contains("will not give a different result"),
            "{}",
            r.message
        );
        // Once the window has slid past, it passes again.
        allow_and_finish(&mut g, clock.at(61.0), &poll).unwrap();
    }

    #[test]
    fn rates_overall_and_per_tool() {
        let clock = Clock::new();
        let mut g = guard(Limits {
            calls_per_minute: 5,
            tool_calls_per_minute: 3,
            ..unlimited()
        });
        for i in 0..3 {
            assert!(allow_and_finish(&mut g, clock.at(i as f64), &call("a", i)).is_ok());
        }
        let r = allow_and_finish(&mut g, clock.at(3.0), &call("a", 9)).unwrap_err();
        assert_eq!((r.limit, r.current), ("tool_calls_per_minute", 4.0));
        assert_eq!(r.resets_in_ms, Some(57_000));
        assert!(allow_and_finish(&mut g, clock.at(3.0), &call("b", 1)).is_ok());
        assert!(allow_and_finish(&mut g, clock.at(4.0), &call("b", 2)).is_ok());
        let r = allow_and_finish(&mut g, clock.at(5.0), &call("c", 1)).unwrap_err();
        assert_eq!(
            (r.limit, r.limit_value, r.current),
            ("calls_per_minute", 5.0, 6.0)
        );
        // A minute after the first call, one slot frees up.
        assert!(allow_and_finish(&mut g, clock.at(59.9), &call("c", 1)).is_err());
        assert!(allow_and_finish(&mut g, clock.at(60.0), &call("c", 1)).is_ok());
    }

    #[test]
    fn in_flight_counts_until_finished() {
        let clock = Clock::new();
        let mut g = guard(Limits {
            max_in_flight: 2,
            ..unlimited()
        });
        assert!(g.check(clock.at(0.0), &call("a", 1)).is_ok());
        assert!(g.check(clock.at(0.0), &call("a", 2)).is_ok());
        let r = g.check(clock.at(0.0), &call("a", 3)).unwrap_err();
        assert_eq!(
            (r.limit, r.aixp_status),
            ("max_in_flight", AixpStatus::CONNECTION_LIMIT)
        );
        g.finished(clock.at(0.1), Outcome::Abandoned);
        assert!(g.check(clock.at(0.1), &call("a", 3)).is_ok());
        assert_eq!(g.in_flight(), 2);
    }

    #[test]
    fn session_budget_at_and_over() {
        let clock = Clock::new();
        let mut g = guard(Limits {
            session_budget: 2,
            ..unlimited()
        });
        assert!(allow_and_finish(&mut g, clock.at(0.0), &call("a", 1)).is_ok());
        assert!(allow_and_finish(&mut g, clock.at(0.0), &call("a", 2)).is_ok());
        let r = allow_and_finish(&mut g, clock.at(0.0), &call("a", 3)).unwrap_err();
        assert_eq!((r.limit, r.current), ("session_budget", 2.0));
    }

    #[test]
    fn hops_continue_from_carried_and_answered_messages() {
        let clock = Clock::new();
        let now = clock.at(0.0);
        let mut g = guard(Limits {
            max_hops: 3,
            ..unlimited()
        });
        // A fresh call starts the count at 0 with this bridge as origin.
        let env = allow_and_finish(&mut g, now, &call("send_message", 1)).unwrap();
        assert_eq!(
            (env.hops, env.origin.as_str(), env.version.as_str()),
            (0, "bridge-a", AIXP_VERSION)
        );
        assert_eq!(env.expires_at, now.wall_ms + 300_000);
        // An answer to a delivered message continues its count.
        g.learn(
            &delivered("m-7", 3, 0, now.wall_ms + 1000),
            "bob",
            "please review",
        );
        let mut answer = call("send_message", 2);
        answer.refers_to = vec!["unknown".into(), "m-7".into()];
        assert_eq!(
            allow_and_finish(&mut g, now, &answer).unwrap().hops,
            3,
            "exactly at the limit"
        );
        g.learn(
            &delivered("m-8", 4, 0, now.wall_ms + 1000),
            "bob",
            "please review",
        );
        answer.refers_to = vec!["m-8".into()];
        let r = allow_and_finish(&mut g, now, &answer).unwrap_err();
        assert_eq!((r.limit, r.limit_value, r.current), ("max_hops", 3.0, 4.0));
        assert!(r.message.contains("back and forth"));
        // A call carrying an envelope (relaying for another agent) is one more hop, same origin.
        let mut relayed = call("route_to_agent", 3);
        relayed.incoming = Incoming {
            id: Some("x".into()),
            hops: Some(2),
            turns: None,
            origin: Some("bridge-c".into()),
            expires_at: Some(now.wall_ms + 5000),
        };
        let env = allow_and_finish(&mut g, now, &relayed).unwrap();
        assert_eq!(
            (env.hops, env.origin.as_str(), env.expires_at),
            (3, "bridge-c", now.wall_ms + 5000)
        );
    }

    #[test]
    fn replies_to_the_writer_are_turns_bounded_by_max_turns_and_courtesy_ends_them() {
        let clock = Clock::new();
        let now = clock.at(0.0);
        let mut g = guard(Limits {
            max_hops: 2,
            max_turns: 4,
            ..unlimited()
        });
        // Handed on three times already, one over max_hops: only a reply to whoever wrote may go.
        g.learn(
            &delivered("q", 3, 3, now.wall_ms + 1000),
            "Alice",
            "Can you check the build?",
        );
        let mut reply = call("send_message", 1);
        reply.refers_to = vec!["q".into()];
        reply.to = Some("alice ");
        reply.text = Some("It is green now.");
        // Back to whoever wrote: a turn, same hops, the count of turns carried on.
        let env = allow_and_finish(&mut g, now, &reply).unwrap();
        assert_eq!((env.hops, env.turns), (3, 3));
        // The same reply to a third party hands the work on: one hop over the limit.
        reply.to = Some("carol");
        assert_eq!(g.check(now, &reply).unwrap_err().limit, "max_hops");
        // The fifth turn is over max_turns.
        g.learn(
            &delivered("q4", 2, 4, now.wall_ms + 1000),
            "alice",
            "And the docs?",
        );
        reply.refers_to = vec!["q4".into()];
        reply.to = Some("alice");
        let r = g.check(now, &reply).unwrap_err();
        assert_eq!((r.limit, r.limit_value, r.current), ("max_turns", 4.0, 5.0));
        assert!(
            r.message.contains("alice") && r.message.contains("Stop replying"),
            "{}",
            r.message
        );
        // Thanks for thanks is refused however young the conversation; thanks for content is not.
        g.learn(
            &delivered("t", 0, 1, now.wall_ms + 1000),
            "alice",
            "Thanks a lot!",
        );
        reply.refers_to = vec!["t".into()];
        reply.text = Some("You're welcome!");
        let r = g.check(now, &reply).unwrap_err();
        assert_eq!(r.limit, "courtesy");
        assert!(r.message.contains("needs no answer"), "{}", r.message);
        reply.text = Some("You're welcome. One more thing: the release is on Friday.");
        assert!(g.check(now, &reply).is_ok());
        reply.refers_to = vec!["q".into()];
        reply.text = Some("thanks!");
        assert!(g.check(now, &reply).is_ok(), "a first thanks is fine");
    }

    #[test]
    fn a_forward_of_a_delivered_text_continues_its_count_named_or_not() {
        let clock = Clock::new();
        let now = clock.at(0.0);
        let mut g = guard(Limits {
            max_hops: 3,
            ..unlimited()
        });
        let plan = "Please review the release plan for version two and pass it on to whoever owns the docs";
        let mut env = delivered("m-1", 3, 0, now.wall_ms + 60_000);
        env.trail = vec!["alice".into(), "bob".into(), "alice".into()];
        env.started_at = 36_120_000;
        env.origin = "alice-bridge".into();
        g.learn(&env, "alice", plan);
        // Sent on to bob with a prefix, naming nothing: hops go on from the delivered message.
        let mut send = call("send_message", 1);
        send.to = Some("bob");
        let forward = format!("FYI: {plan}");
        send.text = Some(&forward);
        let e = allow_and_finish(&mut g, now, &send).unwrap();
        assert_eq!((e.hops, e.origin.as_str()), (3, "alice-bridge"));
        assert!(e.expires_at <= now.wall_ms + 60_000);
        // Back to the writer, even with reply_to: passing the same text back is not a conversation.
        send.refers_to = vec!["m-1".into()];
        send.to = Some("alice");
        let quoted = format!("Forwarding this to you:\n> {plan}\nThanks");
        send.text = Some(&quoted);
        assert_eq!(allow_and_finish(&mut g, now, &send).unwrap().turns, 0);
        // One further along, and the refusal says where the text has been.
        let mut env = delivered("m-2", 4, 0, now.wall_ms + 60_000);
        env.trail = vec!["alice".into(), "bob".into(), "alice".into(), "bob".into()];
        env.started_at = 36_120_000;
        g.learn(&env, "bob", &forward);
        send.refers_to = vec![];
        let r = g.check(now, &send).unwrap_err();
        assert_eq!((r.limit, r.current), ("max_hops", 4.0));
        assert!(
            r.message.contains("alice → bob → alice → bob → you")
                && r.message.contains("first sent by alice at 10:02 UTC"),
            "{}",
            r.message
        );
        // A reply quoting one line of it, or a short text, starts afresh.
        let mut other = call("send_message", 2);
        other.text = Some("About the docs: who owns them now? I think it is carol, but check.");
        assert_eq!(allow_and_finish(&mut g, now, &other).unwrap().hops, 0);
        other.text = Some("ok");
        assert_eq!(allow_and_finish(&mut g, now, &other).unwrap().hops, 0);
        // forward_match 0 turns recognising forwards off; 1.0 counts verbatim copies only.
        g.limits.forward_match = 0.0;
        assert_eq!(allow_and_finish(&mut g, now, &send).unwrap().hops, 0);
        g.limits.forward_match = 1.0;
        send.text = Some(&forward);
        assert_eq!(
            allow_and_finish(&mut g, now, &send).unwrap_err().limit,
            "max_hops"
        );
        let edited = forward.replace("docs", "documentation pages");
        send.text = Some(&edited);
        assert_eq!(allow_and_finish(&mut g, now, &send).unwrap().hops, 0);
    }

    #[test]
    fn expired_incoming_envelope_is_refused() {
        let clock = Clock::new();
        let now = clock.at(10.0);
        let mut g = guard(unlimited());
        let mut c = call("route_to_agent", 1);
        c.incoming = Incoming {
            id: Some("x".into()),
            hops: Some(0),
            turns: None,
            origin: Some("o".into()),
            expires_at: Some(now.wall_ms),
        };
        assert_eq!(g.check(now, &c).unwrap_err().limit, "call_ttl");
        let env = delivered("x", 0, 0, now.wall_ms + 1);
        assert!(Guard::is_live(&env, now));
        assert!(!Guard::is_live(&env, clock.at(10.001)));
    }

    #[test]
    fn breaker_opens_after_k_failures_fails_fast_then_half_opens() {
        let clock = Clock::new();
        let mut g = guard(Limits {
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(5),
            ..unlimited()
        });
        // Two failures, then a success: the count resets.
        for i in 0..2 {
            g.check(clock.at(0.0), &call("a", i)).unwrap();
            g.finished(clock.at(0.0), Outcome::HubFailed);
        }
        allow_and_finish(&mut g, clock.at(0.0), &call("a", 9)).unwrap();
        for i in 0..3 {
            g.check(clock.at(1.0), &call("a", i)).unwrap();
            g.finished(clock.at(1.0), Outcome::HubFailed);
        }
        let r = g.check(clock.at(2.0), &call("a", 5)).unwrap_err();
        assert_eq!(
            (r.limit, r.aixp_status),
            ("breaker_failures", AixpStatus::HUB_DISCONNECTED)
        );
        assert_eq!(r.resets_in_ms, Some(4000));
        assert!(g.check(clock.at(5.999), &call("a", 5)).is_err());
        // Cool-down over: one probe passes, a second waits for it.
        g.check(clock.at(6.0), &call("a", 5)).unwrap();
        assert!(g.check(clock.at(6.0), &call("a", 6)).is_err());
        // The probe fails: open again for a full cool-down.
        g.finished(clock.at(6.5), Outcome::HubFailed);
        assert!(g.check(clock.at(11.0), &call("a", 6)).is_err());
        g.check(clock.at(11.5), &call("a", 6)).unwrap();
        g.finished(clock.at(11.6), Outcome::Answered);
        // Closed: calls flow again.
        allow_and_finish(&mut g, clock.at(11.7), &call("a", 7)).unwrap();
        allow_and_finish(&mut g, clock.at(11.7), &call("a", 8)).unwrap();
    }

    #[test]
    fn memory_for_repeats_stays_within_the_window() {
        let clock = Clock::new();
        let mut g = guard(Limits {
            repeat_window: Duration::from_secs(10),
            ..unlimited()
        });
        for i in 0..5000u64 {
            allow_and_finish(&mut g, clock.at(i as f64 * 0.01), &call("a", i)).unwrap();
        }
        // 50 s of distinct calls at 100/s: only the last 10 s are remembered.
        assert!(
            g.repeats.len() <= 1001 && g.repeat_order.len() <= 1001,
            "{}",
            g.repeats.len()
        );
        assert!(g.repeats.len() >= 999);
    }

    #[test]
    fn references_are_found_in_arguments_and_context() {
        let args = serde_json::json!({"to": "b", "reply_to": "m1", "context": {"in_reply_to": "m2", "x": 1}, "message_id": 5});
        assert_eq!(referenced_messages(Some(&args)), ["m1", "m2"]);
        assert!(referenced_messages(None).is_empty());
    }
}
