//! The tool catalogue: every tool's name, title, description, input schema and
//! annotations, as `tools/list` gives them (only the tools the caller's token
//! may call). The descriptions are what a model reads to decide what to call,
//! so they say how to use each tool, not only what it does. The arguments a
//! tool accepts are its inputSchema's properties, nothing else.

use std::sync::OnceLock;

use serde_json::{Value, json};

use super::inbox::MAX_WAIT_MS;
use super::{Access, scope_of};
use crate::auth::Scopes;

/// Every tool, as a token with every scope sees them (the tests' view).
#[cfg(test)]
pub(crate) fn list() -> Value {
    list_for(&Scopes::all())
}

/// `tools/list` for a token holding `scopes`: the tools it may call.
pub(crate) fn list_for(scopes: &Scopes) -> Value {
    let tools: Vec<Value> = all()
        .iter()
        .filter(|t| match t["name"].as_str().and_then(scope_of) {
            Some(Access::Anyone) => true,
            Some(Access::Needs(s)) => scopes.has(s),
            None => false,
        })
        .cloned()
        .collect();
    json!({ "tools": tools })
}

/// Every tool's name, in catalogue order.
pub(crate) fn names() -> Vec<&'static str> {
    all().iter().filter_map(|t| t["name"].as_str()).collect()
}

/// The argument names `tool` accepts: its inputSchema's properties.
pub(crate) fn accepted_arguments(tool: &str) -> Vec<&'static str> {
    all()
        .iter()
        .find(|t| t["name"] == tool)
        .and_then(|t| t["inputSchema"]["properties"].as_object())
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The whole catalogue, built once.
fn all() -> &'static [Value] {
    static ALL: OnceLock<Vec<Value>> = OnceLock::new();
    ALL.get_or_init(|| match catalogue() {
        Value::Array(v) => v,
        _ => unreachable!("the catalogue is an array"),
    })
}

fn catalogue() -> Value {
    json!([
        {
            "name": "route_to_agent",
            "title": "Route a message to the best agent",
            "description": "Delivers the message to the person whose declared capabilities it asks for (whole words and a few synonyms, e.g. onboarding -> ux, pull request -> code-review; or exactly target_capabilities if given): connected people first, then known offline ones (their inbox keeps it), equal matches taking turns; never you. Says who got it and whether they are online. When nobody declared a fitting capability nothing is delivered (delivered: false) and the result lists everyone with what they declared: choose one and use send_message.",
            "inputSchema": {"type": "object", "properties": {
                "message": {"type": "string", "description": "The message or task to route"},
                "target_capabilities": {"type": "array", "items": {"type": "string"}, "description": "Capabilities the recipient should have declared (as list_agents shows them); replaces matching on the message's words"},
                "context": {"type": "object", "description": "Extra context delivered with the message"}
            }, "required": ["message"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}
        },
        {
            "name": "share_context",
            "title": "Share context with every agent",
            "description": "Stores a value under a key in the hub's shared state (durable) and returns its new version (1 on create, +1 per write); every agent can read it with get_context or at aicp://context/{key} (percent-encoded). To change a value others may change too, read it with get_context, then write with if_version set to the version you read: if someone wrote in between, nothing is written and the error gives the current version; re-read and retry.",
            "inputSchema": {"type": "object", "properties": {
                "context_key": {"type": "string", "description": "Key to store under (at most 256 bytes)"},
                "context_value": {"description": "Any JSON value"},
                "if_version": {"type": "integer", "minimum": 0, "description": "Write only if the key is at this version (0: only if it does not exist yet)"}
            }, "required": ["context_key", "context_value"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "get_context",
            "title": "Read a shared context value",
            "description": "Returns the value shared under a key, with its version, who wrote it last and when (ISO 8601). Pass the version as if_version to share_context to update it without losing someone else's write.",
            "inputSchema": {"type": "object", "properties": {
                "context_key": {"type": "string", "description": "The key, as list_context shows it"}
            }, "required": ["context_key"]},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "list_context",
            "title": "List shared context keys",
            "description": "Lists the shared keys (optionally those starting with prefix) with size in bytes, version, who wrote each last and when; at most 200 per call: when more is true, call again with after=next_after. Values are read with get_context.",
            "inputSchema": {"type": "object", "properties": {
                "prefix": {"type": "string", "description": "Only keys starting with this"},
                "after": {"type": "string", "description": "Only keys after this one (the previous call's next_after)"}
            }},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "delete_context",
            "title": "Delete a shared context key",
            "description": "Deletes a key from the hub's shared state (any agent allowed to share context may delete any key, as it may overwrite it). Frees the quota of whoever wrote it last.",
            "inputSchema": {"type": "object", "properties": {
                "context_key": {"type": "string", "description": "Key to delete"}
            }, "required": ["context_key"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false}
        },
        {
            "name": "orchestrate_collaboration",
            "title": "Split a task between agents",
            "description": "Splits the task into subtasks (each item of a numbered or bulleted list is one; text without list items is one subtask), assigns each by declared capabilities among the named agents (else everyone known except you), spreading the load, delivers each as a message asking the assignee to reply with send_message(reply_to=<that message's id>), and returns the plan with each assignee online or offline. Follow the answers with plan_status(plan_id).",
            "inputSchema": {"type": "object", "properties": {
                "task": {"type": "string", "description": "The task; write the subtasks as a list (1. ... / - ...), one per line"},
                "agents": {"type": "array", "items": {"type": "string"}, "description": "Identities to assign to, each connected now or seen before (case-insensitive when unambiguous; default: everyone known except you). An unknown name refuses the whole plan"}
            }, "required": ["task"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}
        },
        {
            "name": "plan_status",
            "title": "How far a plan is",
            "description": "For a plan you made with orchestrate_collaboration: each subtask, its assignee (online or offline), and its answer once the assignee replied with reply_to set to the subtask's message id; counts done and pending. Only the plan's owner may read it. Read-only: call it again later, or wait with read_inbox wait_ms in between.",
            "inputSchema": {"type": "object", "properties": {
                "plan_id": {"type": "string", "description": "The plan_id orchestrate_collaboration returned"}
            }, "required": ["plan_id"]},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "whoami",
            "title": "Who am I on the hub",
            "description": "This connection's identity (the name other agents use to reach you), how many sessions that identity has open now, its scopes and declared capabilities.",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "list_agents",
            "title": "Who is on the hub",
            "description": "Everyone the hub knows, one entry per identity: status online (with its sessions: connection, client, connected_at) or offline (with last_seen), and declared capabilities (for offline people, the last they declared). Offline people still receive messages: send_message stores them in their inbox until they read it or it expires, so you need not wait for someone to come online. Read-only: to wait for someone to come online, call it again every few seconds; each call is cheap.",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        },
        {
            "name": "send_message",
            "title": "Send a message to an agent",
            "description": "Stores a message in the recipient's inbox (kept until it expires, also after it is read) and notifies their sessions. The recipient must be an agent connected now or seen before (list_agents shows them); an unknown name is an error listing the known ones. Offline recipients get it when they next call read_inbox: recipient_online says which. To answer a message you received, pass to = its from and reply_to = its id. The answer to your message arrives in your own inbox: wait for it with read_inbox and wait_ms.",
            "inputSchema": {"type": "object", "properties": {
                "to": {"type": "string", "description": "Recipient identity as list_agents shows it (case-insensitive when unambiguous)"},
                "text": {"type": "string", "description": "The message"},
                "reply_to": {"type": "string", "description": "The id of the message this answers (from read_inbox; a message the hub still holds), so the sender can match your answer to their request"}
            }, "required": ["to", "text"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}
        },
        {
            "name": "read_inbox",
            "title": "Read my messages",
            "description": "Returns your unread messages, oldest first (at most 100 and about 256 KiB per call), and marks them read, so the next call returns only newer ones: no cursor or acknowledgement to pass. `pending` says how many more wait (call again); `next` says what to do. Call it at the start of a task: teammates send you work here. To answer a message, call send_message with to = its from and reply_to = its id. To wait for an answer, pass wait_ms (at most 30000): the call returns as soon as a message arrives, or empty after wait_ms; then call it again the same way. One call with wait_ms 30000 replaces thirty one-second polls. peek: true looks without marking. Read messages are kept until they expire: include_read: true also returns the most recently read ones. Messages another session of your identity read first are listed under read_by_other_sessions, so nothing vanishes. Read-only for everyone else: calling it again and again is how you wait, not a loop.",
            "inputSchema": {"type": "object", "properties": {
                "wait_ms": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_MS, "description": "How long to wait for a message when none is unread, in milliseconds (0 to 30000; default 0: answer at once). A larger value is clamped to 30000 and the result's note says so"},
                "peek": {"type": "boolean", "description": "true: return the unread messages without marking them read (they come back next time). Default false: what is returned is marked read"},
                "include_read": {"type": "boolean", "description": "true: also return, under read_earlier, the most recently read messages (kept until they expire), each with read_at and read_by. Use it when a message you read earlier is not in front of you any more"}
            }, "additionalProperties": false},
            "annotations": {"readOnlyHint": true, "openWorldHint": false}
        }
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    /// The bridge's guard exempts reads from its repeat limit on the strength of
    /// these hints, so they must be true: reads are exactly the tools that change nothing
    /// another agent sees (an inbox read acknowledges only the caller's own messages).
    #[test]
    fn every_tool_is_annotated_and_only_reads_say_read_only() {
        let tools = list_for(&Scopes::all());
        let mut reads: Vec<&str> = Vec::new();
        for t in tools["tools"].as_array().unwrap() {
            let ann = &t["annotations"];
            let read_only = ann["readOnlyHint"]
                .as_bool()
                .unwrap_or_else(|| panic!("{} has no readOnlyHint", t["name"]));
            assert_eq!(ann["openWorldHint"], false, "{}", t["name"]);
            if read_only {
                reads.push(t["name"].as_str().unwrap());
            } else {
                assert!(ann["destructiveHint"].is_boolean(), "{}", t["name"]);
            }
        }
        reads.sort_unstable();
        assert_eq!(
            reads,
            [
                "get_context",
                "list_agents",
                "list_context",
                "plan_status",
                "read_inbox",
                "whoami"
            ]
        );
        let inbox = tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "read_inbox")
            .unwrap();
        assert!(
            inbox["description"]
                .as_str()
                .unwrap()
                .contains("at most 30000")
        );
    }

    #[test]
    fn every_listed_tool_has_a_scope() {
        let tools = list_for(&Scopes::all())["tools"]
            .as_array()
            .unwrap()
            .clone();
        for t in &tools {
            assert!(scope_of(t["name"].as_str().unwrap()).is_some(), "{t}");
        }
        assert_eq!(tools.len(), 11, "the tool count (docs/hub.md lists each)");
        assert_eq!(
            scope_of("delete_context"),
            Some(Access::Needs(Scope::Share))
        );
    }

    #[test]
    fn a_token_sees_only_the_tools_its_scopes_allow() {
        let names = |scopes: &[&str]| -> Vec<String> {
            list_for(&Scopes::from_list(scopes.iter().copied()).unwrap())["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            names(&["read"]),
            ["get_context", "list_context", "whoami", "list_agents"]
        );
        assert_eq!(names(&[]), ["whoami"]);
        assert_eq!(names(&["read", "share", "message"]).len(), 11);
        assert_eq!(
            accepted_arguments("share_context"),
            ["context_key", "context_value", "if_version"]
        );
        assert!(accepted_arguments("whoami").is_empty());
    }
}
