//! The hub's prompts, with declared arguments substituted into proper text
//! content blocks: `analyze_task` and `collaboration_request`, as the original
//! hub names them, `check_requests`, which has the model read its inbox
//! and answer what teammates asked, and `collect_results` for a plan's
//! answers. The prompts name no capability or agent of their own: they send
//! the model to list_agents for what people actually declared.

use serde_json::{Value, json};

use super::rpc::{self, ErrorData};

pub(crate) fn list() -> Value {
    json!({"prompts": [
        {"name": "analyze_task", "title": "Analyze a task",
         "description": "Break a task into steps and name the capabilities each needs",
         "arguments": [
            {"name": "task", "description": "The task to analyze", "required": true},
            {"name": "context", "description": "Background the analysis should use", "required": false}
         ]},
        {"name": "collaboration_request", "title": "Ask another agent for help",
         "description": "Draft a request for another agent on the hub",
         "arguments": [
            {"name": "task", "description": "What you need done", "required": true},
            {"name": "partner", "description": "The agent to ask (default: whoever fits)", "required": false},
            {"name": "deadline", "description": "When it is needed", "required": false}
         ]},
        {"name": "check_requests", "title": "Check and answer my requests",
         "description": "Read my inbox, answer each request from my teammates, and tell me what was done",
         "arguments": []},
        {"name": "collect_results", "title": "Collect a plan's results",
         "description": "Check which subtasks of a plan are answered and summarise the answers",
         "arguments": [
            {"name": "plan_id", "description": "The plan_id orchestrate_collaboration returned", "required": true}
         ]}
    ]})
}

/// `analyze_task`: steps, each with capabilities people on the hub declared.
fn analyze_task(task: &str, context: Option<&str>) -> (String, String) {
    let mut text = format!(
        "Analyze the following task. First call list_agents to see who is on the hub and which capabilities \
         each declared. Break the task into concrete steps and, for each step, name only capabilities \
         that someone declared (never invent a capability or an agent); say when no one fits a step.\n\
         To hand the steps out, call orchestrate_collaboration with the steps as a numbered list, one per line. \
         Each assignee answers with send_message and reply_to set to the id of their subtask's message; wait for \
         answers with read_inbox and wait_ms 30000 (call it again the same way until they are there), and follow \
         the plan with plan_status.\n\nTask: {task}"
    );
    if let Some(ctx) = context {
        text.push_str(&format!("\n\nContext: {ctx}"));
    }
    (format!("Analyze: {task}"), text)
}

/// `collect_results`: plan_status, then a summary of the answers.
fn collect_results(plan_id: &str) -> (String, String) {
    let text = format!(
        "Call plan_status with plan_id \"{plan_id}\". For every subtask marked done, read its answer \
         (from, text, sent_at). If some are still pending, say which and who has them (online or offline); \
         you may wait with read_inbox and wait_ms 30000 and call plan_status again, but do not send the \
         subtasks again. Then summarise the answers for the user, subtask by subtask, saying who answered \
         each and what is still missing."
    );
    (format!("Collect results of {plan_id}"), text)
}

pub(crate) fn get(params: &Value) -> Result<Value, ErrorData> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| rpc::invalid_params("prompts/get needs a string `name`"))?;
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    let arg = |k: &str| {
        args.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let required = |k: &str| {
        arg(k)
            .ok_or_else(|| rpc::invalid_params(format!("prompt {name:?} needs the argument `{k}`")))
    };
    let (description, text) = match name {
        "analyze_task" => analyze_task(required("task")?, arg("context")),
        "collect_results" => collect_results(required("plan_id")?),
        "collaboration_request" => {
            let task = required("task")?;
            let partner = arg("partner").unwrap_or("the best-suited agent on the hub");
            let mut text = format!(
                "Write a short, self-contained request to {partner} asking for help with: {task}\n\
                 If you do not know who should do it, call list_agents first: it shows each person's capabilities, \
                 and people shown offline still receive messages in their inbox. \
                 Say what you need back and in what form, then send it with the send_message tool \
                 (or route_to_agent if no one fits by name), and note the message_id it returns.\n\
                 Then wait for the answer with read_inbox and wait_ms 30000: each call returns as soon as \
                 a message arrives, or after 30 s with none; call it again the same way until the answer is there \
                 (its reply_to is your message_id), or tell the user you are still waiting. Do not send the request again. \
                 If the answer needs a follow-up, send it with send_message and reply_to = the answer's id."
            );
            if let Some(d) = arg("deadline") {
                text.push_str(&format!("\nDeadline: {d}"));
            }
            (format!("Collaboration request: {task}"), text)
        }
        "check_requests" => (
            "Check and answer my requests".to_owned(),
            "Check my AICP inbox and answer my teammates' requests.\n\
             1. Call read_inbox. It returns my unread messages, oldest first, and marks them read; if `pending` is \
             above 0, call it again until it is 0. Messages under read_by_other_sessions were already read by another \
             session of mine: mention them, but answer them only if that session did not.\n\
             2. For each request, do what it asks if you can, then answer it with send_message(to = the message's from, \
             reply_to = the message's id). If you cannot do it, answer anyway and say why, so nobody waits in vain.\n\
             3. If the inbox is empty, say so; to wait for requests, call read_inbox with wait_ms 30000.\n\
             4. Finally tell me what you received, from whom, what you answered, and anything left open."
                .to_owned(),
        ),
        other => {
            return Err(rpc::invalid_params(format!("unknown prompt {other:?}")));
        }
    };
    Ok(json!({
        "description": description,
        "messages": [{"role": "user", "content": {"type": "text", "text": text}}]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_arguments_and_requires_the_declared_ones() {
        let r = get(
            &json!({"name": "analyze_task", "arguments": {"task": "ship it", "context": "v2"}}),
        )
        .unwrap();
        let text = r["messages"][0]["content"]["text"].as_str().unwrap();
        assert!(
            text.contains("Task: ship it") && text.contains("Context: v2"),
            "{text}"
        );
        assert_eq!(r["messages"][0]["content"]["type"], "text");
        let e = get(&json!({"name": "collaboration_request", "arguments": {}})).unwrap_err();
        assert!(e.message.contains("`task`"), "{e:?}");
        let r = get(
            &json!({"name": "collaboration_request", "arguments": {"task": "t", "partner": "bob"}}),
        )
        .unwrap();
        assert!(
            r["messages"][0]["content"]["text"]
                .as_str()
                .unwrap()
                .contains("to bob")
        );
        assert!(get(&json!({"name": "nope"})).is_err());
    }

    #[test]
    fn check_requests_tells_the_model_to_read_its_inbox_and_answer_with_reply_to() {
        assert!(
            list()["prompts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "check_requests")
        );
        let r = get(&json!({"name": "check_requests"})).unwrap();
        let text = r["messages"][0]["content"]["text"].as_str().unwrap();
        for needed in [
            "read_inbox",
            "send_message",
            "reply_to",
            "pending",
            "wait_ms",
        ] {
            assert!(text.contains(needed), "{needed}: {text}");
        }
        let r = get(&json!({"name": "collaboration_request", "arguments": {"task": "t"}})).unwrap();
        let text = r["messages"][0]["content"]["text"].as_str().unwrap();
        for needed in ["list_agents", "reply_to", "offline", "wait_ms 30000"] {
            assert!(text.contains(needed), "{needed}: {text}");
        }
        assert!(!text.contains("next_since"), "{text}");
    }

    #[test]
    fn analyze_task_invents_no_capability_and_collect_results_uses_plan_status() {
        let r = get(&json!({"name": "analyze_task", "arguments": {"task": "t"}})).unwrap();
        let text = r["messages"][0]["content"]["text"].as_str().unwrap();
        for needed in ["list_agents", "wait_ms", "reply_to", "plan_status"] {
            assert!(text.contains(needed), "{needed}: {text}");
        }
        for invented in ["rust", "code-review", "writing"] {
            assert!(!text.contains(invented), "{invented}: {text}");
        }
        let r =
            get(&json!({"name": "collect_results", "arguments": {"plan_id": "plan-1"}})).unwrap();
        let text = r["messages"][0]["content"]["text"].as_str().unwrap();
        assert!(
            text.contains("plan_status") && text.contains("\"plan-1\""),
            "{text}"
        );
        assert!(get(&json!({"name": "collect_results", "arguments": {}})).is_err());
        let listed = list();
        assert!(
            listed["prompts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "collect_results")
        );
    }
}
