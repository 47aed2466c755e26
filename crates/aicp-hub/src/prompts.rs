//! The hub's prompts, with declared arguments substituted into proper text
//! content blocks: `analyze_task` and `collaboration_request`, as the original hub names them.

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
         ]}
    ]})
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
        "analyze_task" => {
            let task = required("task")?;
            let mut text = format!(
                "Analyze the following task. Break it into concrete steps, and for each step name the capabilities it needs \
                 (for example: rust, code-review, analysis, writing) so it can be routed to the right agent.\n\nTask: {task}"
            );
            if let Some(ctx) = arg("context") {
                text.push_str(&format!("\n\nContext: {ctx}"));
            }
            (format!("Analyze: {task}"), text)
        }
        "collaboration_request" => {
            let task = required("task")?;
            let partner = arg("partner").unwrap_or("the best-suited agent on the hub");
            let mut text = format!(
                "Write a short, self-contained request to {partner} asking for help with: {task}\n\
                 Say what you need back and in what form, then send it with the send_message tool \
                 (or route_to_agent if you do not know who should do it).\n\
                 Then wait for the answer with read_inbox and wait_ms 30000: each call returns as soon as \
                 a message arrives, or after 30 s with none; call it again the same way (passing next_since) \
                 until the answer is there, or tell the user you are still waiting. Do not send the request again."
            );
            if let Some(d) = arg("deadline") {
                text.push_str(&format!("\nDeadline: {d}"));
            }
            (format!("Collaboration request: {task}"), text)
        }
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
}
