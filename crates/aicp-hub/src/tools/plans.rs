//! `orchestrate_collaboration`: splits a task into subtasks, assigns each by
//! declared capabilities, delivers the plan whole or not at all and stores it;
//! `plan_status`: each subtask's assignee and answer, for the plan's owner.

use std::sync::Arc;

use serde_json::{Value, json};

use super::inbox::truncate_bytes;
use super::messages::{NotDelivered, deliver};
use super::names::{people, presence_word, resolve_recipient, unknown_recipient};
use super::{iso8601, store_error, str_arg, str_list, timestamp, with_store};
use crate::routing::{self, Candidate};
use crate::rpc::{tool_error, tool_result};
use crate::store::{PLAN_RETENTION_MS, Plan, PlanSubtask};
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
            // Everyone known, the caller included: naming yourself is allowed.
            let mut everyone = match people(shared, "").await {
                Ok(p) => p,
                Err(e) => return store_error(&e),
            };
            let known: Vec<String> = {
                let mut k: Vec<String> = everyone.iter().map(|c| c.identity.clone()).collect();
                k.sort();
                k
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
                if let Some(i) = everyone.iter().position(|c| c.identity == n) {
                    out.push(everyone.swap_remove(i));
                }
            }
            out
        }
        None => match people(shared, &caller.identity).await {
            Ok(p) => p,
            Err(e) => return store_error(&e),
        },
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
    let assignment = routing::assign(&subtasks, &agents, |id| shared.presence.routed_load(id));
    let plan_id = format!("plan-{:x}-{:08x}", now_ms(), fastrand::u32(..));
    let total = subtasks.len();
    // Each message carries its own subtask and a short quote of the task, not
    // the whole task again (32 copies of a 1 MB task were 35 MB stored).
    let excerpt = task_excerpt(&task, TASK_EXCERPT_CHARS);
    let me = &caller.identity;
    let texts: Vec<String> = subtasks
        .iter()
        .enumerate()
        .map(|(i, st)| {
            format!(
                "[{plan_id}] subtask {}/{total} from {me}: {st}\n\n(Part of: \"{excerpt}\")\n\
                 When done, reply with send_message(to=\"{me}\", text=<your result>, reply_to=<the id of this message>); \
                 the id is shown with this message in read_inbox. {me} follows the plan with plan_status.",
                i + 1,
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
    let mut stored = Vec::with_capacity(total);
    let mut failures = Vec::new();
    for (i, ((st, who), text)) in subtasks.iter().zip(&assignment).zip(texts).enumerate() {
        let online = who
            .as_ref()
            .map(|w| shared.presence.is_connected(&w.identity));
        let mut step = json!({
            "index": i + 1,
            "description": st,
            "agent": who.as_ref().map(|w| &w.identity),
            "presence": online.map(presence_word),
            "capabilities": who.as_ref().map(|w| w.matched.clone()).unwrap_or_default(),
            "delivered": false,
            "message_id": null,
        });
        let mut message_id = None;
        if let Some(who) = who {
            match deliver(shared, caller, incoming, &who.identity, text, None).await {
                Ok(m) => {
                    shared.presence.routed_to(&who.identity);
                    step["delivered"] = json!(true);
                    step["message_id"] = json!(m.id);
                    message_id = Some(m.id);
                }
                Err(NotDelivered::Store(e)) => {
                    step["error"] = json!(e.to_string());
                    failures.push(e.to_string());
                }
                Err(NotDelivered::Refused(r)) => return NotDelivered::Refused(r).into_result(),
            }
        }
        stored.push(PlanSubtask {
            index: (i + 1) as u32,
            description: st.clone(),
            assignee: who.as_ref().map(|w| w.identity.clone()),
            message_id,
            answer: None,
        });
        steps.push(step);
    }
    let plan = Plan {
        plan_id: plan_id.clone(),
        owner: caller.identity.clone(),
        task: excerpt,
        created_at: now_ms(),
        subtasks: stored,
    };
    if let Err(e) = with_store(shared, move |s| s.put_plan(&plan)).await {
        failures.push(format!(
            "the plan was delivered but not stored, so plan_status will not know it: {e}"
        ));
    }
    let status = if agents.is_empty() {
        "planned_unassigned"
    } else if failures.is_empty() {
        "delegated"
    } else {
        "partially_delegated"
    };
    let next = if agents.is_empty() {
        "Nobody else is known to this hub, so nothing was delivered.".to_owned()
    } else {
        format!(
            "Each assignee was asked to reply with reply_to set to their subtask's message id. Wait with read_inbox wait_ms, and call plan_status(plan_id=\"{plan_id}\") to see which subtasks are answered."
        )
    };
    let mut result = json!({
        "status": status,
        "plan_id": plan_id,
        "task": task,
        "agents": agents.iter().map(|a| &a.identity).collect::<Vec<_>>(),
        "subtasks": steps,
        "next": next,
        "timestamp": timestamp(),
    });
    if !failures.is_empty() {
        result["errors"] = json!(failures);
    }
    tool_result(result, !failures.is_empty())
}

/// Most bytes of one answer `plan_status` quotes; the whole answer is in the owner's inbox.
pub(crate) const ANSWER_EXCERPT_BYTES: usize = 8 * 1024;

/// Who may read a plan: its owner only. The answers are messages addressed to
/// the owner, which no one else may read in their inbox either, and a plan id
/// is easy to pass around; an owner who wants to share results shares them
/// with share_context.
pub(super) async fn plan_status(shared: &Arc<Shared>, caller: &Caller, args: &Value) -> Value {
    let plan_id = match str_arg(args, "plan_id") {
        Ok(p) => p.trim().to_owned(),
        Err(e) => return e,
    };
    let id = plan_id.clone();
    let plan = match with_store(shared, move |s| s.get_plan(&id)).await {
        Ok(p) => p.filter(|p| p.owner == caller.identity),
        Err(e) => return store_error(&e),
    };
    let Some(plan) = plan else {
        // Another owner's plan reads as unknown: its id confirms nothing.
        return tool_error(
            format!(
                "you have no plan {plan_id:?} (plans are kept {} days and only their owner may read them); orchestrate_collaboration returns the plan_id",
                PLAN_RETENTION_MS / 86_400_000
            ),
            json!({"plan_id": plan_id}),
        );
    };
    let mut done = 0;
    let subtasks: Vec<Value> = plan
        .subtasks
        .iter()
        .map(|st| {
            let answer = st.answer.as_ref().map(|a| {
                let text = truncate_bytes(&a.text, ANSWER_EXCERPT_BYTES);
                json!({
                    "from": a.from,
                    "text": text,
                    "truncated": text.len() < a.text.len(),
                    "sent_at": iso8601(a.sent_at),
                    "message_id": a.message_id,
                })
            });
            done += usize::from(answer.is_some());
            let status = if answer.is_some() {
                "done"
            } else if st.assignee.is_none() {
                "unassigned"
            } else {
                "pending"
            };
            json!({
                "index": st.index,
                "description": st.description,
                "assignee": st.assignee,
                "presence": st.assignee.as_deref().map(|a| presence_word(shared.presence.is_connected(a))),
                "message_id": st.message_id,
                "status": status,
                "answer": answer,
            })
        })
        .collect();
    let total = subtasks.len();
    let next = if done == total {
        "Every subtask is answered: summarise the answers for the user."
    } else {
        "Some subtasks are not answered yet: wait with read_inbox wait_ms 30000, then call plan_status again."
    };
    tool_result(
        json!({
            "plan_id": plan.plan_id,
            "task": plan.task,
            "created_at": iso8601(plan.created_at),
            "subtasks": subtasks,
            "done": done,
            "pending": total - done,
            "total": total,
            "complete": done == total,
            "next": next,
        }),
        false,
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
            .map(|i| format!("- step {i} {}\n", "w".repeat(31_000)))
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
            stored < task.len() + 32 * 700,
            "{stored} bytes stored for a {} byte task",
            task.len()
        );
        // A task whose subtasks would store more than MAX_PLAN_BYTES is refused whole.
        let huge = format!(
            "- {}\n- {}",
            "v".repeat(MAX_PLAN_BYTES / 2),
            "w".repeat(MAX_PLAN_BYTES / 2)
        );
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
