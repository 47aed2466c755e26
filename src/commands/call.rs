//! `tools` lists the hub's tools; `call` calls one. Exit codes tell success,
//! a tool error (`isError`) and a transport failure apart.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::{block_on, connect, exit, read_stdin, result_text};
use crate::cli::{CallArgs, ToolsArgs};

pub fn tools(args: ToolsArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let mut client = connect(&args.target, Duration::from_secs(30)).await?;
        let tools = client.list_tools().await?;
        client.close().await;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&tools)?);
        } else {
            let width = tools
                .iter()
                .filter_map(|t| t["name"].as_str())
                .map(str::len)
                .max()
                .unwrap_or(0);
            for tool in &tools {
                let name = tool["name"].as_str().unwrap_or("?");
                let description = tool["description"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("");
                println!("{name:width$}  {description}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })?
}

pub fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let arguments = match args.args.as_deref() {
        None => serde_json::json!({}),
        Some("-") => {
            serde_json::from_str(&read_stdin()?).context("--args - : stdin is not JSON")?
        }
        Some(text) => serde_json::from_str(text).context("--args is not JSON")?,
    };
    anyhow::ensure!(
        arguments.is_object(),
        "--args must be a JSON object, like '{{\"text\": \"hi\"}}'"
    );
    let patience =
        Duration::try_from_secs_f64(args.timeout).context("--timeout must be a positive number")?;
    block_on(async {
        let mut client = connect(&args.target, patience).await?;
        let result = client.call_tool(&args.tool, arguments).await;
        client.close().await;
        let result = result?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&result)?);
        } else {
            println!("{}", result_text(&result));
        }
        if result["isError"] == true {
            eprintln!("aicp-bridge: the tool {} reported an error", args.tool);
            return Ok(ExitCode::from(exit::TOOL_ERROR));
        }
        Ok(ExitCode::SUCCESS)
    })?
}
