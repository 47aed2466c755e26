//! `orchestrate_collaboration`: splits a task into subtasks, assigns each to
//! an agent and delivers the plan whole or not at all.

use std::sync::Arc;

use serde_json::{Value, json};

use super::messages::{NotDelivered, deliver};
use super::names::{known_identities, resolve_recipient, unknown_recipient};
use super::{store_error, str_arg, str_list, timestamp, with_store};
use crate::routing::{self, Candidate};
use crate::rpc::{tool_error, tool_result};
use crate::{Caller, Shared, now_ms};
use aicp_proto::aixp::{self, Incoming};

/// Most subtasks one `orchestrate_collaboration` delivers: a plan, not a mailing list.
pub(crate) const MAX_SUBTASKS: usize = 32;
/// Characters of the task each `orchestrate_collaboration` subtask message
/// quotes; the plan id names the whole, which the caller holds.
pub(crate) const TASK_EXCERPT_CHARS: usize = 200;
/// Most bytes of message text one `orchestrate_collaboration` may store, all
/// subtasks together.
pub(crate) const MAX_PLAN_BYTES: usize = 4 << 20;

/// The first `max` characters of `task` on one line, with `…` when cut.
pub(super) fn task_excerpt(task: &str, max: usize) -> String {
    let flat: String = task
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max + 1)
        .collect();
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

pub(super) async fn orchestrate(
    shared: &Arc<Shared>,
    caller: &Caller,
    incoming: &Incoming,
    args: &Value,
) -> Value {
    let task = match str_arg(args, "task") {
        Ok(t) => t.to_owned(),
        Err(e) => return e,
    };
    let named = match str_list(args, "agents") {
        Ok(a) => a,
        Err(e) => return e,
    };
    // Check the hop cap once, before anything is delivered: a plan is delivered whole or not at all.
    if let Err(r) = aixp::next_envelope(
        incoming,
        None,
        aixp::Step::Handoff,
        String::new(),
        &caller.identity,
        now_ms(),
        shared.settings.message_ttl_ms,
        super::messages::bounds(shared),
    ) {
        return NotDelivered::Refused(r).into_result();
    }
    let agents: Vec<Candidate> = match named.filter(|n| !n.is_empty()) {
        Some(names) => {
            let seen = with_store(shared, |s| s.agents_seen())
                .await
                .unwrap_or_default();
            let known = match known_identities(shared).await {
                Ok(k) => k,
                Err(e) => return store_error(&e),
            };
            let mut out: Vec<Candidate> = Vec::new();
            for raw in names {
                // Every name is checked before anything is delivered: a plan is delivered whole or not at all.
                let n = match resolve_recipient(&raw, &known) {
                    Ok(n) => n,
                    Err(reason) => return unknown_recipient(reason, &known),
                };
                if out.iter().any(|c| c.identity == n) {
                    continue;
                }
                let capabilities = shared
                    .presence
                    .capabilities_of(&n)
                    .or_else(|| {
                        seen.iter()
                            .find(|a| a.identity == n)
                            .map(|a| a.capabilities.clone())
                    })
                    .unwrap_or_default();
                out.push(Candidate {
                    identity: n,
                    capabilities,
                });
            }
            out
        }
        None => shared.presence.candidates(&caller.identity),
    };
    let subtasks = routing::split_task(&task);
    if subtasks.len() > MAX_SUBTASKS {
        return tool_error(
            format!(
                "the task splits into {} subtasks; the hub plans at most {MAX_SUBTASKS} at once",
                subtasks.len()
            ),
            json!({}),
        );
    }
    let assignment = routing::assign(&subtasks, &agents);
    let plan_id = format!("plan-{:x}-{:08x}", now_ms(), fastrand::u32(..));
    let total = subtasks.len();
    // Each message carries its own subtask and a short quote of the task, not
    // the whole task again (32 copies of a 1 MB task were 35 MB stored).
    let excerpt = task_excerpt(&task, TASK_EXCERPT_CHARS);
    let texts: Vec<String> = subtasks
        .iter()
        .enumerate()
        .map(|(i, st)| {
            format!(
                "[{plan_id}] subtask {}/{total} of \"{excerpt}\": {}",
                i + 1,
                st.description
            )
        })
        .collect();
    let plan_bytes: usize = texts
        .iter()
        .zip(&assignment)
        .filter(|(_, who)| who.is_some())
        .map(|(t, _)| t.len())
        .sum();
    if plan_bytes > MAX_PLAN_BYTES {
        return tool_error(
            format!(
                "the plan's subtask messages would store {plan_bytes} bytes; one orchestrate_collaboration stores at most {MAX_PLAN_BYTES}: send a shorter task, or share it with share_context and name the key"
            ),
            json!({"max_bytes": MAX_PLAN_BYTES}),
        );
    }
    let mut steps = Vec::with_capacity(total);
    let mut failures = Vec::new();
    for (i, ((st, who), text)) in subtasks.iter().zip(&assignment).zip(texts).enumerate() {
        let mut step = json!({
            "index": i + 1,
            "description": st.description,
            "capabilities": st.capabilities,
            "agent": who,
            "delivered": false,
            "message_id": null,
        });
        if let Some(who) = who {
            match deliver(shared, caller, incoming, who, text, None).await {
                Ok(m) => {
                    step["delivered"] = json!(true);
                    step["message_id"] = json!(m.id);
                }
                Err(NotDelivered::Store(e)) => {
                    step["error"] = json!(e.to_string());
                    failures.push(e.to_string());
                }
                Err(NotDelivered::Refused(r)) => return NotDelivered::Refused(r).into_result(),
            }
        }
        steps.push(step);
    }
    let status = if agents.is_empty() {
        "planned_unassigned"
    } else if failures.is_empty() {
        "delegated"
    } else {
        "partially_delegated"
    };
    tool_result(
        json!({
            "status": status,
            "plan_id": plan_id,
            "task": task,
            "agents": agents.iter().map(|a| &a.identity).collect::<Vec<_>>(),
            "subtasks": steps,
            "timestamp": timestamp(),
        }),
        !failures.is_empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::*;

    #[tokio::test]
    async fn a_plan_stores_each_subtask_once_and_is_bounded() {
        let shared = hub(StoreLimits {
            max_pending_bytes_per_sender: u64::MAX,
            ..Default::default()
        });
        let alice = connect(&shared, "alice", Scopes::all());
        connect(&shared, "bob", Scopes::all());
        // 32 lines of ~31 KB: one 1 MB task.
        let task: String = (0..32)
            .map(|i| format!("step {i} {}\n", "w".repeat(31_000)))
            .collect();
        let r = tool(
            &shared,
            &alice,
            "orchestrate_collaboration",
            json!({"task": task, "agents": ["bob"]}),
        )
        .await;
        assert_eq!(
            r["structuredContent"]["status"],
            "delegated",
            "{:.300}",
            r.to_string()
        );
        let stored: usize = shared
            .store
            .read_inbox("bob", 0, now_ms(), 100)
            .unwrap()
            .iter()
            .map(|m| m.text.len())
            .sum();
        assert!(
            stored < task.len() + 32 * 400,
            "{stored} bytes stored for a {} byte task",
            task.len()
        );
        // A task whose default phases would store more than MAX_PLAN_BYTES is refused whole.
        let huge = "v".repeat(MAX_PLAN_BYTES / 2);
        let r = tool(
            &shared,
            &alice,
            "orchestrate_collaboration",
            json!({"task": huge, "agents": ["bob"]}),
        )
        .await;
        assert_eq!(r["isError"], true);
        let why = r["structuredContent"]["error"].as_str().unwrap();
        assert!(why.contains(&MAX_PLAN_BYTES.to_string()), "{why}");
        assert_eq!(
            shared
                .store
                .read_inbox("bob", 0, now_ms(), 100)
                .unwrap()
                .len(),
            32
        );
        assert_eq!(task_excerpt("a\nb", 10), "a b");
        assert_eq!(task_excerpt("abcdef", 3), "abc…");
        assert_eq!(crate::tools::inbox::truncate_bytes("héllo", 2), "h");
    }
}
