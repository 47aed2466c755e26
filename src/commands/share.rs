//! `share KEY VALUE`: calls the hub's `share_context`, the way a script puts
//! a piece of context where every connected assistant can read it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use super::{block_on, connect, exit, json_or_string, read_stdin, result_text};
use crate::cli::ShareArgs;

pub fn share(args: ShareArgs) -> anyhow::Result<ExitCode> {
    let text = match (&args.file, args.value.as_deref()) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        (None, Some("-")) => read_stdin()?,
        (None, Some(value)) => value.to_owned(),
        (None, None) => anyhow::bail!("give a VALUE, `-` to read stdin, or --file PATH"),
    };
    let value = json_or_string(text.trim_end_matches('\n'), args.string);
    let kind = match &value {
        serde_json::Value::String(_) => "string",
        serde_json::Value::Object(_) => "object",
        serde_json::Value::Array(_) => "array",
        _ => "JSON value",
    };
    block_on(async {
        let mut client = connect(&args.target, Duration::from_secs(30)).await?;
        let arguments = json!({ "context_key": args.key, "context_value": value });
        let result = client.call_tool("share_context", arguments).await;
        client.close().await;
        let result = result?;
        if args.json {
            println!("{}", serde_json::to_string(&result)?);
        } else if result["isError"] != true {
            println!("shared {} ({kind}) on the hub", args.key);
        }
        if result["isError"] == true {
            eprintln!(
                "aicp-bridge: the hub refused to share {}: {}",
                args.key,
                result_text(&result)
            );
            return Ok(ExitCode::from(exit::TOOL_ERROR));
        }
        Ok(ExitCode::SUCCESS)
    })?
}
