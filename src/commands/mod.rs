//! The everyday command line: one file per command. Each returns the exit
//! code it decided on; errors travel up to `main`, which prints them once.
//! Results go to stdout (text, or JSON with --json); messages for people go to
//! stderr, so scripts can pipe the results.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::cli::HubTarget;
use crate::commands::client::{ClientError, HubClient};
use crate::config::{Resolved, Tuning};

pub mod call;
pub(crate) mod client;
pub mod hub;
pub mod install;
pub mod login;
pub mod serve;
pub mod share;
pub mod status;

/// Exit codes shared by the commands (documented in docs/cli.md).
pub mod exit {
    /// Something went wrong that is not the hub's doing: config, input, keyring.
    pub const FAILURE: u8 = 1;
    /// The hub could not be reached, refused the token, or failed the request.
    pub const HUB: u8 = 3;
    /// The tool ran and reported an error (`isError: true`).
    pub const TOOL_ERROR: u8 = 4;
}

/// Maps an error to its exit code: hub failures are told apart from the rest.
pub fn exit_code_for(err: &anyhow::Error) -> ExitCode {
    if err
        .chain()
        .any(|e| e.downcast_ref::<ClientError>().is_some())
    {
        ExitCode::from(exit::HUB)
    } else {
        ExitCode::from(exit::FAILURE)
    }
}

/// Runs a command's async part on a small runtime of its own.
pub fn block_on<F: Future>(f: F) -> anyhow::Result<F::Output> {
    crate::tls::install_default_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(f))
}

/// Resolves the target, finds the token and connects.
pub async fn connect(target: &HubTarget, patience: Duration) -> anyhow::Result<HubClient> {
    let resolved = Resolved::load(target)?;
    let url = resolved.hub_url()?;
    let lookup = resolved.lookup_token(&url)?;
    let cfg = resolved.hub_config(url, lookup.credential, Tuning::default())?;
    Ok(HubClient::connect(&cfg, patience).await?)
}

/// A JSON value from text: JSON when it parses, else a string (unless `force_string`).
pub fn json_or_string(text: &str, force_string: bool) -> serde_json::Value {
    if force_string {
        return serde_json::Value::String(text.to_owned());
    }
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

/// Reads all of stdin as text.
pub fn read_stdin() -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read stdin")?;
    Ok(text)
}

/// The text blocks of a tool result, one per line.
pub fn result_text(result: &serde_json::Value) -> String {
    result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|block| match block["type"].as_str() {
            Some("text") => block["text"].as_str().map(str::to_owned),
            Some(other) => Some(format!("[{other} content]")),
            None => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_json_when_they_can() {
        assert_eq!(json_or_string("42", false), serde_json::json!(42));
        assert_eq!(
            json_or_string("{\"a\":1}", false),
            serde_json::json!({"a": 1})
        );
        assert_eq!(json_or_string("hello", false), serde_json::json!("hello"));
        assert_eq!(json_or_string("42", true), serde_json::json!("42"));
    }

    #[test]
    fn result_text_joins_text_blocks_and_names_others() {
        let r = serde_json::json!({"content": [{"type": "text", "text": "a"}, {"type": "image", "data": ""}, {"type": "text", "text": "b"}]});
        assert_eq!(result_text(&r), "a\n[image content]\nb");
    }
}
