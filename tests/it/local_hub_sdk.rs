//! The official Python `mcp` SDK as the host of two bridges (alice and bob)
//! relaying to the built `aicp-bridge hub`: every tool, resource and prompt,
//! two users exchanging context and work, a bad token refused at the upgrade,
//! then the hub restarted and the state found intact (tests/py/hub_e2e.py).

use std::path::PathBuf;
use std::time::Duration;

use crate::hosts::sdk_python;
use crate::support::bridge::BIN;
use crate::support::local_hub::LocalHub;

async fn run_phase(python: &PathBuf, phase: &str, hub: &LocalHub, tokens: &[String]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/hub_e2e.py");
    let run = tokio::process::Command::new(python)
        .arg(script)
        .args([phase, BIN, hub.url()])
        .args(tokens)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("python host finished")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{phase}:\n{stdout}\n{}\nhub stderr:\n{}",
        String::from_utf8_lossy(&out.stderr),
        hub.stderr()
    );
    assert!(
        stdout.contains(&format!("hub e2e ({phase}): all checks passed")),
        "{stdout}"
    );
}

#[tokio::test]
async fn python_sdk_hosts_share_context_and_work_through_the_local_hub() {
    let Some(python) = sdk_python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide the Python mcp SDK (.venv or AICP_TEST_PYTHON)"
        );
        eprintln!("SKIPPED: no Python with the mcp SDK; run scripts/test.sh once to create .venv");
        return;
    };
    let hub = LocalHub::start(&[]).await;
    let tokens = vec![
        hub.token("alice", "share,read,message"),
        hub.token("bob", "share,read,message"),
        // Signed with another hub's secret: well-formed, refused.
        LocalHub::start(&[])
            .await
            .token("alice", "share,read,message"),
    ];
    run_phase(&python, "main", &hub, &tokens).await;
    let hub = hub.restart().await;
    run_phase(&python, "after-restart", &hub, &tokens).await;
}
