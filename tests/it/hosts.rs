//! Real MCP hosts drive the built bridge: rmcp's client (the official Rust
//! SDK, strict about result types) and the official Python SDK from PyPI.

use std::path::PathBuf;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams, ResourceContents,
};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use serde_json::json;

use crate::support::bridge::{BIN, isolate};
use crate::support::{FakeHub, FakeHubOptions};

fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().unwrap().clone()
}

async fn rmcp_session(opts: FakeHubOptions) {
    let hub = FakeHub::start(opts).await;
    let url = hub.url();
    let mut home = None;
    let transport = TokioChildProcess::new(tokio::process::Command::new(BIN).configure(|cmd| {
        cmd.args(["serve", "--hub", &url]);
        home = Some(isolate(cmd));
    }))
    .unwrap();
    let client = ().serve(transport).await.expect("rmcp initializes through the bridge");
    assert_eq!(
        client
            .peer_info()
            .unwrap()
            .server_info
            .as_ref()
            .unwrap()
            .name,
        "test-hub"
    );

    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));
    let r = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "from rmcp"}))),
        )
        .await
        .unwrap();
    assert_eq!(r.content[0].as_text().unwrap().text, "from rmcp");
    let resources = client.list_resources(None).await.unwrap();
    assert_eq!(resources.resources[0].uri, "aicp://shared-state");
    let body = client
        .read_resource(ReadResourceRequestParams::new("aicp://shared-state"))
        .await
        .unwrap();
    match &body.contents[0] {
        ResourceContents::TextResourceContents { text, .. } => assert_eq!(text, "{\"k\":1}"),
        other => panic!("{other:?}"),
    }
    let templates = client.list_resource_templates(None).await.unwrap();
    assert_eq!(
        templates.resource_templates[0].uri_template,
        "aicp://context/{key}"
    );
    let prompts = client.list_all_prompts().await.unwrap();
    assert_eq!(prompts[0].name, "analyze_task");
    // Against the quirky hub this only types because the bridge wraps the bare string.
    let prompt = client
        .get_prompt(
            GetPromptRequestParams::new("analyze_task")
                .with_arguments(args(json!({"task": "typed"}))),
        )
        .await
        .expect("prompts/get result types in rmcp");
    assert_eq!(prompt.messages.len(), 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn rmcp_client_as_a_strict_host() {
    rmcp_session(FakeHubOptions::default()).await;
}

#[tokio::test]
async fn rmcp_client_through_a_quirky_hub() {
    rmcp_session(FakeHubOptions {
        quirky: true,
        ..Default::default()
    })
    .await;
}

/// The venv Python with the `mcp` SDK: $AICP_TEST_PYTHON, or .venv/ in the repo (what .ci/run makes).
pub(crate) fn sdk_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AICP_TEST_PYTHON") {
        return Some(p.into());
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    venv.exists().then_some(venv)
}

#[tokio::test]
async fn python_sdk_host_drives_every_capability() {
    let Some(python) = sdk_python() else {
        // CI always has it (.ci/run makes the venv); a developer without it is told.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide the Python mcp SDK (.venv or AICP_TEST_PYTHON)"
        );
        eprintln!(
            "SKIPPED: no Python with the mcp SDK; run `python3 -m venv .venv && .venv/bin/pip install -r tests/py/requirements.txt`"
        );
        return;
    };
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/sdk_host.py");
    let mut python = tokio::process::Command::new(python);
    let _home = isolate(&mut python);
    let run = python
        .arg(script)
        .arg(BIN)
        .arg(hub.url())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("python host finished")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python host failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("sdk host: all checks passed"), "{stdout}");
    // The SDK's cancel of the hanging call reached the hub with the SDK's own id.
    assert_eq!(hub.cancelled().len(), 1, "{:?}", hub.cancelled());
}

/// The MCP Inspector's CLI (npm `@modelcontextprotocol/inspector-cli`, installed
/// into tests/node by scripts/test.sh): one process per method, each spawning the bridge.
fn inspector() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/node/node_modules/@modelcontextprotocol/inspector-cli/build/index.js");
    path.exists().then_some(path)
}

#[tokio::test]
async fn mcp_inspector_cli_drives_the_bridge() {
    let Some(cli) = inspector() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide the MCP Inspector CLI (npm ci in tests/node)"
        );
        eprintln!("SKIPPED: no MCP Inspector CLI; run `npm ci --prefix tests/node`");
        return;
    };
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let url = hub.url();
    let cases: [(&[&str], &str); 5] = [
        (&["--method", "tools/list"], "\"echo\""),
        (
            &[
                "--method",
                "tools/call",
                "--tool-name",
                "echo",
                "--tool-arg",
                "text=from-inspector",
            ],
            "from-inspector",
        ),
        (
            &["--method", "resources/read", "--uri", "aicp://shared-state"],
            "aicp://shared-state",
        ),
        (
            &[
                "--method",
                "prompts/get",
                "--prompt-name",
                "analyze_task",
                "--prompt-args",
                "task=inspect",
            ],
            "Analyze: inspect",
        ),
        (
            &["--method", "resources/templates/list"],
            "aicp://context/{key}",
        ),
    ];
    for (args, expect) in cases {
        // v1.0.3 finds its own package.json relative to the working directory: run it from its build dir.
        let mut node = tokio::process::Command::new("node");
        let _home = isolate(&mut node);
        let out = node
            .current_dir(cli.parent().unwrap())
            .arg(&cli)
            .args([BIN, "serve", "--hub", &url])
            .args(args)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), out)
            .await
            .expect("inspector finished")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(expect),
            "{args:?}: expected {expect} in {stdout}"
        );
    }
}
