//! The tool catalogue: every tool's name, title, description, input schema and
//! annotations, as `tools/list` gives them. The descriptions are what a model
//! reads to decide what to call, so they say how to use each tool, not only what it does.

use serde_json::{Value, json};

use super::inbox::MAX_WAIT_MS;

/// `tools/list`: names, descriptions and input schemas.
pub(crate) fn list() -> Value {
    json!({"tools": [
        {
            "name": "route_to_agent",
            "title": "Route a message to the best agent",
            "description": "Classifies the message's intent and delivers it to the connected agent whose declared capabilities match best (target_capabilities if given). Says to whom; when no agent matches, returns a suggestion of the kind of agent to ask.",
            "inputSchema": {"type": "object", "properties": {
                "message": {"type": "string", "description": "The message or task to route"},
                "target_capabilities": {"type": "array", "items": {"type": "string"}, "description": "Capabilities the recipient should have"},
                "context": {"type": "object", "description": "Extra context delivered with the message"}
            }, "required": ["message"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}
        },
        {
            "name": "share_context",
            "title": "Share context with every agent",
            "description": "Stores a value under a key in the hub's shared state (durable); every agent can read it at aicp://shared-state or aicp://context/{key}.",
            "inputSchema": {"type": "object", "properties": {
                "context_key": {"type": "string", "description": "Key to store under (at most 256 bytes)"},
                "context_value": {"description": "Any JSON value"}
            }, "required": ["context_key", "context_value"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false}
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
            "description": "Splits the task into subtasks (one per line or ';' if listed, else analyse/do/review), assigns every subtask to an agent (named in agents, else the connected ones), delivers each as a message and returns the plan.",
            "inputSchema": {"type": "object", "properties": {
                "task": {"type": "string", "description": "The task to split"},
                "agents": {"type": "array", "items": {"type": "string"}, "description": "Identities to assign to, each connected now or seen before (case-insensitive when unambiguous; default: every other connected agent)"}
            }, "required": ["task"]},
            "annotations": {"readOnlyHint": false, "destructiveHint": false, "idempotentHint": false, "openWorldHint": false}
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
                "reply_to": {"type": "string", "description": "The id of the message this answers (from read_inbox), so the sender can match your answer to their request"}
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
    ]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;
    use crate::tools::{Access, scope_of};

    /// The bridge's guard exempts reads from its repeat limit on the strength of
    /// these hints, so they must be true: reads are exactly the tools that change nothing
    /// another agent sees (an inbox read acknowledges only the caller's own messages).
    #[test]
    fn every_tool_is_annotated_and_only_reads_say_read_only() {
        let tools = list();
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
        assert_eq!(reads, ["list_agents", "read_inbox", "whoami"]);
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
        let tools = list()["tools"].as_array().unwrap().clone();
        for t in &tools {
            assert!(scope_of(t["name"].as_str().unwrap()).is_some(), "{t}");
        }
        assert_eq!(tools.len(), 8, "the tool count (docs/hub.md lists each)");
        assert_eq!(
            scope_of("delete_context"),
            Some(Access::Needs(Scope::Share))
        );
    }
}
