//! `--strict`: checks each hub result against the MCP schema as the official
//! Rust SDK (rmcp) types it, and logs what does not conform. The relay still
//! forwards the original; this is a diagnostic for hub authors, off by default
//! because it parses every result in full.

use serde::de::DeserializeOwned;

use aicp_proto::wire::Method;

/// `Err` describes why `result` is not a valid result for `method`.
pub fn check(method: Method, result: &str) -> Result<(), String> {
    use rmcp::model::*;
    match method {
        Method::Initialize => conforms::<InitializeResult>(result),
        Method::ToolsList => conforms::<ListToolsResult>(result),
        Method::ToolsCall => conforms::<CallToolResult>(result),
        Method::ResourcesList => conforms::<ListResourcesResult>(result),
        Method::ResourcesTemplatesList => conforms::<ListResourceTemplatesResult>(result),
        Method::ResourcesRead => conforms::<ReadResourceResult>(result),
        Method::PromptsList => conforms::<ListPromptsResult>(result),
        Method::PromptsGet => conforms::<GetPromptResult>(result),
        Method::Complete => conforms::<CompleteResult>(result),
        Method::Ping | Method::LoggingSetLevel | Method::Other => Ok(()),
    }
}

fn conforms<T: DeserializeOwned>(result: &str) -> Result<(), String> {
    serde_json::from_str::<T>(result).map(drop).map_err(|e| {
        format!(
            "does not match {}: {e}",
            std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("?")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_and_names_invalid_results() {
        assert!(
            check(
                Method::ToolsList,
                r#"{"tools":[{"name":"a","inputSchema":{"type":"object"}}]}"#
            )
            .is_ok()
        );
        let err = check(
            Method::PromptsGet,
            r#"{"messages":[{"role":"user","content":"bare"}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("GetPromptResult"), "{err}");
        assert!(check(Method::Other, "whatever").is_ok());
    }
}
