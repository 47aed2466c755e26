//! What the bridge answers itself while the hub is unreachable, so a host is
//! never left waiting: `initialize` gets a local answer whose `instructions`
//! say the hub is down (the relay announces `list_changed` once it is back),
//! list requests get empty lists, and everything else a JSON-RPC error that
//! names the cause, which the model can read and act on.

use rmcp::model::{Implementation, InitializeResult, ProtocolVersion, ServerCapabilities};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::relay::upstream::HubError;
use aicp_proto::codes;
use aicp_proto::wire::{self, Id, Method};

/// The answer to one host request made while the hub is down.
pub fn answer(
    id: &Id,
    method: Method,
    params: Option<&RawValue>,
    cause: &HubError,
    hub: &str,
) -> String {
    let empty = match method {
        Method::Initialize => return wire::response(id, &initialize_result(params, cause, hub)),
        Method::ToolsList => r#"{"tools":[]}"#,
        Method::ResourcesList => r#"{"resources":[]}"#,
        Method::ResourcesTemplatesList => r#"{"resourceTemplates":[]}"#,
        Method::PromptsList => r#"{"prompts":[]}"#,
        _ => return unavailable(id, cause),
    };
    wire::response(id, empty)
}

/// The error for a request that cannot reach the hub.
pub fn unavailable(id: &Id, cause: &HubError) -> String {
    wire::error_response(
        Some(id),
        codes::HUB_UNAVAILABLE,
        &format!(
            "AICP hub unavailable: {cause}. The bridge keeps reconnecting; try again shortly."
        ),
        Some(json!({ "aixpStatus": cause.aixp_status() })),
    )
}

fn initialize_result(params: Option<&RawValue>, cause: &HubError, hub: &str) -> String {
    // Agree to the host's version: the hub's own choice is unknown until it is back.
    let requested = params
        .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
        .and_then(|p| p.get("protocolVersion").cloned())
        .and_then(|v| serde_json::from_value::<ProtocolVersion>(v).ok())
        .unwrap_or(ProtocolVersion::LATEST_WITH_INITIALIZE);
    let capabilities: ServerCapabilities = serde_json::from_value(json!({
        "tools": { "listChanged": true },
        "resources": { "listChanged": true },
        "prompts": { "listChanged": true },
    }))
    .expect("capabilities are valid");
    let result = InitializeResult::new(capabilities)
        .with_protocol_version(requested)
        .with_server_info(Implementation::new("aicp-bridge", env!("CARGO_PKG_VERSION")))
        .with_instructions(format!(
            "The AICP hub at {hub} is unreachable right now ({cause}). aicp-bridge keeps reconnecting \
             and will send notifications/tools/list_changed when the hub is back; until then there are \
             no tools and requests fail with this reason."
        ));
    serde_json::to_string(&result).expect("initialize result serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Id {
        Id::from_value(&json!(1)).unwrap()
    }

    #[test]
    fn local_initialize_echoes_the_host_version_and_says_why() {
        let params =
            RawValue::from_string(r#"{"protocolVersion":"2025-06-18","capabilities":{}}"#.into())
                .unwrap();
        let cause = HubError::Connect("refused".into());
        let text = answer(
            &id(),
            Method::Initialize,
            Some(&params),
            &cause,
            "ws://127.0.0.1:1/mcp",
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(v["result"]["serverInfo"]["name"], "aicp-bridge");
        assert!(
            v["result"]["instructions"]
                .as_str()
                .unwrap()
                .contains("unreachable")
        );
        // The host must be able to read it as a real InitializeResult.
        serde_json::from_value::<InitializeResult>(v["result"].clone()).unwrap();
    }

    #[test]
    fn lists_are_empty_and_calls_fail_with_the_cause() {
        let cause = HubError::Connect("refused".into());
        let v: Value =
            serde_json::from_str(&answer(&id(), Method::ToolsList, None, &cause, "h")).unwrap();
        assert_eq!(v["result"]["tools"], json!([]));
        let v: Value =
            serde_json::from_str(&answer(&id(), Method::ToolsCall, None, &cause, "h")).unwrap();
        assert_eq!(v["error"]["code"], codes::HUB_UNAVAILABLE.0);
        assert!(v["error"]["message"].as_str().unwrap().contains("refused"));
        assert_eq!(v["error"]["data"]["aixpStatus"], 5003);
    }
}
