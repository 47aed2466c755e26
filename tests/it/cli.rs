//! The everyday command line on the built binary, each test a user's session
//! in a temp HOME: status in every failure we can produce, login/status/serve/
//! logout through the real OS keyrings, share, tools and call with their exit
//! codes, Claude Desktop registration, completions, and a grep that the token
//! never shows up anywhere it should not.

use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::bridge::BIN;
use crate::support::cli::{Cli, output, require};
use crate::support::{FakeHub, FakeHubOptions};

const TOKEN: &str = "tok-Zq81-not-for-logs";

fn secured() -> FakeHubOptions {
    FakeHubOptions {
        require_token: Some(TOKEN.into()),
        ..Default::default()
    }
}

fn problems(report: &Value) -> Vec<(String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["problem"].as_str().unwrap().to_owned(),
                p["fix"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn status_is_ok_against_a_working_hub() {
    let hub = FakeHub::start(secured()).await;
    let mut cli = Cli::new();
    cli.env("AICP_TOKEN", TOKEN);
    let out = cli.run(&["status", "--json", "--hub", &hub.url()]).await;
    let r = out.json();
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert_eq!(r["schema"], 1);
    assert_eq!(r["ok"], true);
    assert_eq!(r["hub"]["from"], "command-line");
    assert_eq!(r["credential"]["source"]["kind"], "env");
    let c = &r["connection"];
    assert_eq!(
        (c["reachable"].as_bool(), c["aixpStatus"].as_u64()),
        (Some(true), Some(5001))
    );
    assert_eq!(c["serverName"], "test-hub");
    assert_eq!(c["protocolVersion"], "2025-11-25");
    assert!(c["toolCount"].as_u64().unwrap() > 5);
    assert!(c["rttMs"].as_f64().unwrap() > 0.0);
    assert_eq!(r["limits"]["max_hops"], 8);
    assert!(!out.stdout.contains(TOKEN));
    // The text form says the same to a person.
    let text = cli.run(&["status", "--hub", &hub.url()]).await;
    assert_eq!(text.code, Some(0));
    assert!(
        text.stdout.contains("test-hub") && text.stdout.contains("all good"),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn status_tells_the_truth_in_each_failure() {
    // Hub down.
    let cli = Cli::new();
    let out = cli
        .run(&["status", "--json", "--hub", "ws://127.0.0.1:1/mcp"])
        .await;
    assert_eq!(out.code, Some(1));
    let r = out.json();
    assert_eq!(r["connection"]["reachable"], false);
    assert_eq!(r["connection"]["aixpStatus"], 5003);
    assert!(
        problems(&r)
            .iter()
            .any(|(p, fix)| p.contains("cannot reach the hub") && fix.contains("start the hub")),
        "{r}"
    );

    // A bad token.
    let hub = FakeHub::start(secured()).await;
    let mut cli = Cli::new();
    cli.env("AICP_TOKEN", "wrong-token");
    let r = cli
        .run(&["status", "--json", "--hub", &hub.url()])
        .await
        .json();
    assert_eq!(r["connection"]["aixpStatus"], 5004);
    assert!(
        problems(&r)
            .iter()
            .any(|(p, fix)| p.contains("HTTP 401") && fix.starts_with("aicp-bridge login")),
        "{r}"
    );

    // No token and no keyring to keep one.
    let cli = Cli::new();
    let r = cli
        .run(&["status", "--json", "--hub", &hub.url()])
        .await
        .json();
    assert!(
        r["credential"]["keyring"]["unavailable"]
            .as_str()
            .unwrap()
            .contains("AICP_KEYRING=none")
    );
    assert!(
        problems(&r).iter().any(|(p, fix)| p.contains("HTTP 401")
            && p.contains("no OS keyring")
            && fix.contains("AICP_TOKEN")),
        "{r}"
    );

    // No hub at all.
    let out = cli.run(&["status", "--json"]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        problems(&out.json())
            .iter()
            .any(|(p, fix)| p.contains("no hub URL") && fix.contains("login --hub"))
    );

    // Claude Desktop set up here but aicp-bridge not registered; then registered.
    let open = FakeHub::start(FakeHubOptions::default()).await;
    let cli = Cli::new();
    std::fs::create_dir_all(cli.path("config/Claude")).unwrap();
    let r = cli
        .run(&["status", "--json", "--hub", &open.url()])
        .await
        .json();
    assert!(
        problems(&r)
            .iter()
            .any(|(p, fix)| p.contains("not registered")
                && fix == "aicp-bridge install claude-desktop"),
        "{r}"
    );
    assert_eq!(cli.run(&["install", "claude-desktop"]).await.code, Some(0));
    let out = cli.run(&["status", "--json", "--hub", &open.url()]).await;
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert_eq!(out.json()["claudeDesktop"]["registered"], json!(["aicp"]));
}

#[tokio::test]
async fn settings_resolve_flag_over_env_over_file_and_limits_come_from_the_file() {
    let good = FakeHub::start(FakeHubOptions::default()).await;
    let quirky = FakeHub::start(FakeHubOptions {
        quirky: true,
        ..Default::default()
    })
    .await;
    let mut cli = Cli::new();
    std::fs::create_dir_all(cli.config_file().parent().unwrap()).unwrap();
    let file = format!(
        "# mine\ndefault_profile = \"team\"\n\n[limits]\nmax_hops = 3\n\n[profiles.team]\nhub = \"{}\"\n\n[profiles.team.limits]\nrepeat_limit = 2\n",
        good.url()
    );
    std::fs::write(cli.config_file(), &file).unwrap();
    let r = cli.run(&["status", "--json"]).await.json();
    assert_eq!(
        (r["config"]["profile"].as_str(), r["hub"]["from"].as_str()),
        (Some("team"), Some("config-file"))
    );
    assert_eq!(
        r["connection"]["protocolVersion"], "2025-11-25",
        "the file's hub"
    );
    assert_eq!(
        (
            r["limits"]["max_hops"].as_u64(),
            r["limits"]["repeat_limit"].as_u64()
        ),
        (Some(3), Some(2))
    );
    cli.env("AICP_HUB_URL", &quirky.url());
    let r = cli.run(&["status", "--json"]).await.json();
    assert_eq!(
        r["connection"]["protocolVersion"], "2024-11-05",
        "the environment's hub beats the file's"
    );
    let r = cli
        .run(&["status", "--json", "--hub", &good.url()])
        .await
        .json();
    assert_eq!(
        r["connection"]["protocolVersion"], "2025-11-25",
        "the flag beats the environment"
    );
    assert_eq!(
        std::fs::read_to_string(cli.config_file()).unwrap(),
        file,
        "reading never rewrites the file"
    );

    // serve takes the same limits from the file: the third identical call is refused.
    let mut cmd = cli.command(&["serve", "--hub", &good.url()]);
    let calls = (1..=3)
        .map(|i| json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"echo","arguments":{"text":"same"}}}).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let out = output(&mut cmd, Some(&format!("{calls}\n"))).await;
    let replies: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), 3, "{}", out.stderr);
    // The refusal is local, so it may come back before the two calls the hub answers.
    let third = replies.iter().find(|r| r["id"] == 3).unwrap();
    assert_eq!(
        third["result"]["_meta"]["aicp/guard"]["limit"],
        "repeat_limit"
    );
    assert_eq!(third["result"]["_meta"]["aicp/guard"]["limitValue"], 2);

    // A bad limit in the file is named.
    std::fs::write(cli.config_file(), format!("{file}\n[profiles.team.more]\n")).unwrap();
    std::fs::write(
        cli.config_file(),
        file.replace("max_hops = 3", "max_hopz = 3"),
    )
    .unwrap();
    let out = cli.run(&["status"]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stdout.contains("unknown limit") || out.stderr.contains("unknown limit"),
        "{out:?}"
    );
}

/// login → status → serve (the token reaches the hub's upgrade) → logout →
/// status, each a separate process, inside one keyring session.
async fn keyring_round_trip(hub: &FakeHub, cli: &Cli, wrap: &[&str], backend: &str) {
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"kr","version":"1"}}});
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"through the keyring"}}});
    let script = format!(
        r#"set -e
printf '%s\n' "$TOKEN_INPUT" | "$BIN" login --hub "$HUB" --token-stdin
echo '--- status'
"$BIN" status --json
echo '--- serve'
printf '%s\n%s\n' '{init}' '{call}' | "$BIN" serve
echo '--- logout'
"$BIN" logout
echo '--- status after'
"$BIN" status --json || true
"#
    );
    let mut cmd = Command::new(wrap[0]);
    cmd.args(&wrap[1..]).arg("sh").arg("-c").arg(&script);
    cli.apply(&mut cmd);
    cmd.env("BIN", BIN)
        .env("HUB", hub.url())
        .env("TOKEN_INPUT", TOKEN)
        .env("AICP_KEYRING", backend);
    let out = output(&mut cmd, None).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let section = |name: &str| -> String {
        let start = out
            .stdout
            .find(&format!("--- {name}\n"))
            .unwrap_or_else(|| panic!("no {name} in {}", out.stdout))
            + name.len()
            + 5;
        let rest = &out.stdout[start..];
        rest[..rest.find("\n--- ").unwrap_or(rest.len())].to_owned()
    };
    assert!(out.stdout.starts_with("logged in to "), "{}", out.stdout);
    let status: Value = serde_json::from_str(&section("status")).unwrap();
    assert_eq!(status["ok"], true, "{status}");
    assert_eq!(status["credential"]["source"]["kind"], "keyring");
    assert_eq!(status["credential"]["source"]["backend"], backend);
    assert_eq!(
        status["hub"]["from"], "config-file",
        "login saved the hub in the profile"
    );
    let reply: Value = serde_json::from_str(section("serve").lines().last().unwrap()).unwrap();
    assert_eq!(
        reply["result"]["content"][0]["text"], "through the keyring",
        "{reply}"
    );
    let bearer = format!("Bearer {TOKEN}");
    assert!(
        hub.upgrade_headers()
            .iter()
            .flatten()
            .any(|(k, v)| k == "authorization" && v == &bearer),
        "serve sent the stored token on the upgrade"
    );
    assert!(
        section("logout").starts_with("removed the token for "),
        "{}",
        out.stdout
    );
    let after: Value = serde_json::from_str(&section("status after")).unwrap();
    assert_eq!(after["credential"]["source"], Value::Null);
    assert_eq!(
        after["connection"]["aixpStatus"], 5004,
        "the hub now refuses: no token"
    );
    // The token is nowhere but the keyring.
    for text in [
        &out.stdout,
        &out.stderr,
        &std::fs::read_to_string(cli.config_file()).unwrap(),
    ] {
        assert!(!text.contains(TOKEN), "the token leaked");
    }
}

#[tokio::test]
async fn keyutils_login_status_serve_logout() {
    if !require(&["keyctl"]) {
        return;
    }
    let hub = FakeHub::start(secured()).await;
    let cli = Cli::new();
    keyring_round_trip(&hub, &cli, &["keyctl", "session", "-"], "keyutils").await;
}

#[tokio::test]
async fn secret_service_login_status_serve_logout() {
    if !require(&["dbus-run-session", "gnome-keyring-daemon"]) {
        return;
    }
    let hub = FakeHub::start(secured()).await;
    let cli = Cli::new();
    // A private session bus with gnome-keyring's Secret Service, its login keyring unlocked from stdin.
    let unlock = "echo -n test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1; exec \"$@\"";
    keyring_round_trip(
        &hub,
        &cli,
        &["dbus-run-session", "--", "sh", "-c", unlock, "unlock"],
        "secret-service",
    )
    .await;
}

#[tokio::test]
async fn login_needs_a_usable_keyring_and_a_token_not_from_argv() {
    let hub = FakeHub::start(secured()).await;
    let cli = Cli::new();
    let out = cli
        .run_stdin(
            &["login", "--hub", &hub.url(), "--token-stdin"],
            Some(TOKEN),
        )
        .await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("no OS keyring is usable") && out.stderr.contains("--token-file"),
        "{}",
        out.stderr
    );
    let out = cli.run(&["login", "--hub", &hub.url()]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("--token-stdin"),
        "no terminal: {}",
        out.stderr
    );
    let out = cli
        .run(&["login", "--hub", &hub.url(), "--token", TOKEN])
        .await;
    assert_eq!(out.code, Some(2), "there is no flag that takes the token");
    assert!(
        !cli.config_file().exists(),
        "nothing saved when login failed"
    );
}

#[tokio::test]
async fn tools_call_and_share_with_their_exit_codes() {
    let hub = FakeHub::start(FakeHubOptions::default()).await;
    let cli = Cli::new();
    let url = hub.url();
    let out = cli.run(&["tools", "--hub", &url]).await;
    assert_eq!(out.code, Some(0));
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("echo ") && l.contains("Echoes its text")),
        "{}",
        out.stdout
    );
    let tools: Value = cli.run(&["tools", "--json", "--hub", &url]).await.json();
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "share_context")
    );

    let out = cli
        .run(&[
            "call",
            "--hub",
            &url,
            "echo",
            "--args",
            r#"{"text":"hi there"}"#,
        ])
        .await;
    assert_eq!((out.code, out.stdout.trim()), (Some(0), "hi there"));
    let out = cli
        .run_stdin(
            &["call", "--hub", &url, "echo", "--args", "-", "--json"],
            Some(r#"{"text":"piped"}"#),
        )
        .await;
    assert_eq!(out.json()["structuredContent"]["echo"]["text"], "piped");
    let out = cli.run(&["call", "--hub", &url, "fail"]).await;
    assert_eq!(out.code, Some(4), "a tool error: {out:?}");
    assert!(out.stdout.contains("tool failed on purpose"));
    let out = cli
        .run(&["call", "--hub", "ws://127.0.0.1:1/mcp", "echo"])
        .await;
    assert_eq!(out.code, Some(3), "transport failure: {out:?}");
    let out = cli
        .run(&["call", "--hub", &url, "echo", "--args", "[1]"])
        .await;
    assert_eq!(out.code, Some(1));
    let out = cli.run(&["call", "--hub", &url, "no_such_tool"]).await;
    assert_eq!(out.code, Some(3), "the hub refused the request: {out:?}");

    // share: JSON when it parses, a string when it does not or with --string, stdin with -.
    let shared = |key: &str| -> Value {
        hub.received()
            .iter()
            .rev()
            .find(|m| m["params"]["arguments"]["context_key"] == key)
            .map(|m| m["params"]["arguments"]["context_value"].clone())
            .unwrap_or_else(|| panic!("{key} never shared"))
    };
    let out = cli
        .run(&["share", "--hub", &url, "plan", r#"{"steps":[1,2]}"#])
        .await;
    assert_eq!(
        (out.code, out.stdout.trim()),
        (Some(0), "shared plan (object) on the hub")
    );
    assert_eq!(shared("plan"), json!({"steps": [1, 2]}));
    cli.run(&["share", "--hub", &url, "note", "just words"])
        .await;
    assert_eq!(shared("note"), json!("just words"));
    cli.run(&["share", "--hub", &url, "--string", "num", "42"])
        .await;
    assert_eq!(shared("num"), json!("42"));
    cli.run_stdin(
        &["share", "--hub", &url, "from-stdin", "-"],
        Some("[true]\n"),
    )
    .await;
    assert_eq!(shared("from-stdin"), json!([true]));
    let path = cli.path("value.json");
    std::fs::write(&path, "{\"k\": \"v\"}").unwrap();
    let out = cli
        .run(&[
            "share",
            "--hub",
            &url,
            "from-file",
            "--file",
            path.to_str().unwrap(),
            "--json",
        ])
        .await;
    assert_eq!(out.json()["structuredContent"]["status"], "shared");
    assert_eq!(shared("from-file"), json!({"k": "v"}));
}

#[tokio::test]
async fn install_claude_desktop_keeps_everything_else() {
    let cli = Cli::new();
    let dir = cli.path("config/Claude");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("claude_desktop_config.json");
    let original = r#"{
  "globalShortcut": "Alt+Space",
  "mcpServers": {
    "files": {"command": "npx", "args": ["-y", "server-filesystem", "/home/me"], "env": {"DEBUG": "1"}},
    "weather": {"command": "/opt/weather", "args": []}
  },
  "unknownFutureKey": {"a": [1, 2.50, null], "b": "x"}
}"#;
    std::fs::write(&path, original).unwrap();

    let out = cli
        .run(&[
            "install",
            "claude-desktop",
            "--dry-run",
            "--profile",
            "work",
        ])
        .await;
    assert_eq!(out.code, Some(0));
    assert!(out.stdout.contains("would write"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        original,
        "dry run writes nothing"
    );

    let out = cli
        .run(&["install", "claude-desktop", "--profile", "work"])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("claude mcp add aicp"),
        "other hosts are shown: {}",
        out.stdout
    );
    let before: Value = serde_json::from_str(original).unwrap();
    let after: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for key in ["globalShortcut", "unknownFutureKey"] {
        assert_eq!(after[key], before[key], "{key} changed");
    }
    for server in ["files", "weather"] {
        assert_eq!(
            after["mcpServers"][server], before["mcpServers"][server],
            "{server} changed"
        );
    }
    let entry = &after["mcpServers"]["aicp"];
    let command = std::path::Path::new(entry["command"].as_str().unwrap());
    assert!(
        command.is_absolute() && command.ends_with("aicp-bridge"),
        "{entry}"
    );
    assert_eq!(entry["args"], json!(["serve", "--profile", "work"]));
    assert!(
        entry.get("env").is_none(),
        "no token or anything secret in the host's config"
    );
    let backups: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".bak-"))
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read_to_string(backups[0].path()).unwrap(),
        original
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let out = cli.run(&["uninstall", "claude-desktop"]).await;
    assert_eq!(out.code, Some(0));
    let gone: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        gone, before,
        "uninstall gives back the same config in meaning"
    );

    // A config that is not JSON is refused, not overwritten.
    std::fs::write(&path, "{ broken").unwrap();
    let out = cli.run(&["install", "claude-desktop"]).await;
    assert_eq!(out.code, Some(1));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ broken");
}

#[tokio::test]
async fn completions_are_printed_for_each_shell() {
    let cli = Cli::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = cli.run(&["completions", shell]).await;
        assert_eq!(out.code, Some(0));
        assert!(
            out.stdout.contains("aicp-bridge") && out.stdout.contains("login"),
            "{shell}"
        );
    }
}

#[tokio::test]
async fn the_token_never_appears_where_it_should_not() {
    if !require(&["keyctl"]) {
        return;
    }
    let hub = FakeHub::start(secured()).await;
    let mut cli = Cli::new();
    cli.env("AICP_KEYRING", "keyutils").env("AICP_LOG", "trace");
    let url = hub.url();
    // Everything in one keyring session: login, status, tools, call, share, and
    // a serve (at trace level) whose state file is read while it runs (polled
    // for up to 10 s: a loaded machine may take a while to start it).
    let script = r#"set -e
printf '%s' "$TOKEN_INPUT" | "$BIN" login --hub "$HUB" --token-stdin
"$BIN" status --json
"$BIN" status
"$BIN" tools
"$BIN" call echo --args "{\"text\":\"x\"}"
"$BIN" share k v
( printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"g","version":"1"}}}'; i=0; until cat "$XDG_RUNTIME_DIR"/aicp-bridge/serve-*.json >&2 2>/dev/null; do i=$((i+1)); [ $i -gt 200 ] && break; sleep 0.05; done ) | "$BIN" serve --log-file "$HOME/serve.log"
"#;
    let mut cmd = Command::new("keyctl");
    cmd.args(["session", "-", "sh", "-c", script]);
    cli.apply(&mut cmd);
    cmd.env("BIN", BIN)
        .env("HUB", &url)
        .env("TOKEN_INPUT", TOKEN);
    let out = output(&mut cmd, None).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("\"callsRelayed\""),
        "the state file was read: {}",
        out.stderr
    );
    let log = std::fs::read_to_string(cli.path("serve.log")).unwrap();
    assert!(log.contains("serving MCP on stdio"));
    let config = std::fs::read_to_string(cli.config_file()).unwrap();
    for (what, text) in [
        ("stdout", &out.stdout),
        ("stderr", &out.stderr),
        ("log file", &log),
        ("config file", &config),
    ] {
        assert!(!text.contains(TOKEN), "the token appears in the {what}");
    }
    // It did travel where it should: on the upgrade.
    assert!(
        hub.upgrade_headers()
            .iter()
            .flatten()
            .any(|(k, v)| k == "authorization" && v.ends_with(TOKEN))
    );
}
