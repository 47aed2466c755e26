//! `status`: what a person needs to know when something does not work. It
//! checks each link in turn (config, token, hub, running bridges, host
//! registration), names every problem with the command that fixes it, and
//! exits non-zero if there is one. `--json` prints the same as one object
//! whose schema is documented in docs/cli.md and versioned by `schema`.

use std::process::ExitCode;
use std::time::Duration;

use aicp_proto::aixp::AixpStatus;
use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};

use super::{block_on, exit};
use crate::cli::StatusArgs;
use crate::commands::client::{ClientError, HubClient};
use crate::config::{Resolved, Tuning, redact_url};
use crate::credentials::TokenSource;
use crate::relay::upstream::HubError;
use crate::state;

/// Bumped when a field changes meaning or goes away; new fields may appear without a bump.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub schema: u32,
    pub version: &'static str,
    pub ok: bool,
    pub config: ConfigReport,
    pub hub: Option<HubReport>,
    pub credential: CredentialReport,
    pub connection: Option<ConnectionReport>,
    pub limits: Value,
    pub bridges: Vec<BridgeReport>,
    pub claude_desktop: ClaudeDesktopReport,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigReport {
    pub path: String,
    pub exists: bool,
    pub profile: String,
    pub profiles: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubReport {
    pub url: String,
    pub from: crate::config::Origin,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialReport {
    /// Where the token comes from; `None` when there is none.
    pub source: Option<TokenSource>,
    /// The keyring's backend, or why none is usable; `None` if not consulted.
    pub keyring: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionReport {
    pub reachable: bool,
    pub aixp_status: AixpStatus,
    pub rtt_ms: Option<f64>,
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    pub protocol_version: Option<String>,
    pub tool_count: Option<usize>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeReport {
    #[serde(flatten)]
    pub state: state::BridgeState,
    pub running: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaudeDesktopReport {
    /// Config files found where Claude Desktop reads them.
    pub configs: Vec<String>,
    /// Names under mcpServers whose command is an aicp-bridge.
    pub registered: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Problem {
    pub problem: String,
    pub fix: String,
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let patience =
        Duration::try_from_secs_f64(args.timeout).context("--timeout must be a positive number")?;
    let report = gather(&args, patience)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILURE)
    })
}

fn gather(args: &StatusArgs, patience: Duration) -> anyhow::Result<Report> {
    let resolved = Resolved::load(&args.target)?;
    let mut problems = Vec::new();
    let mut problem = |problem: String, fix: &str| {
        problems.push(Problem {
            problem,
            fix: fix.to_owned(),
        })
    };

    let config = ConfigReport {
        path: resolved.config.path.display().to_string(),
        exists: resolved.config.exists,
        profile: resolved.profile_name.clone(),
        profiles: resolved.config.profile_names(),
    };
    let limits = match resolved.limits(&[]) {
        Ok(l) => serde_json::to_value(l)?,
        Err(e) => {
            problem(
                format!("{e:#}"),
                "fix the [limits] tables in the config file (keys in docs/limits.md)",
            );
            Value::Null
        }
    };

    let url = match resolved.hub_url() {
        Ok(url) => Some(url),
        Err(e) => {
            problem(format!("{e:#}"), "aicp-bridge login --hub wss://HUB/mcp");
            None
        }
    };
    let hub = url
        .as_ref()
        .zip(resolved.hub_raw())
        .map(|(u, (_, from))| HubReport {
            url: redact_url(u),
            from,
        });

    let mut credential = CredentialReport {
        source: None,
        keyring: None,
    };
    let mut connection = None;
    if let Some(url) = url {
        let lookup = match resolved.lookup_token(&url) {
            Ok(lookup) => Some(lookup),
            Err(e) => {
                problem(
                    format!("{e:#}"),
                    "aicp-bridge login (or fix --token-file / token_file)",
                );
                None
            }
        };
        let mut token = None;
        // Only a problem if the hub wants a token: an open hub needs none.
        let mut no_keyring: Option<String> = None;
        if let Some(lookup) = lookup {
            credential.keyring = lookup.keyring.as_ref().map(|k| match k {
                Ok(k) => json!({ "backend": k.backend }),
                Err(e) => json!({ "unavailable": e.to_string() }),
            });
            credential.source = lookup.credential.as_ref().map(|c| c.source.clone());
            if lookup.credential.is_none()
                && let Some(Err(e)) = &lookup.keyring
            {
                no_keyring = Some(e.to_string());
            }
            token = lookup.credential;
        }
        let had_token = token.is_some();
        let tuning = Tuning {
            connect_timeout: patience,
            ..Tuning::default()
        };
        let cfg = resolved.hub_config(url.clone(), token, tuning)?;
        let report = block_on(probe(&cfg, patience))?;
        if let Some(error) = &report.error {
            let (error, fix) = match (report.aixp_status, &no_keyring) {
                (AixpStatus::IDENTIFICATION, _) if had_token => (
                    error.clone(),
                    "aicp-bridge login   (the token was refused: log in again)",
                ),
                (AixpStatus::IDENTIFICATION, Some(why)) => (
                    format!("{error} [{why}]"),
                    "export AICP_TOKEN=…, or pass --token-file PATH (a file only you can read): there is no OS keyring here",
                ),
                (AixpStatus::IDENTIFICATION, None) => {
                    (error.clone(), "aicp-bridge login   (the hub wants a token)")
                }
                _ if error.contains("TLS") => (
                    error.clone(),
                    "check the hub's certificate, or pass --ca-file with its CA",
                ),
                _ => (
                    error.clone(),
                    "check the hub URL, or start the hub (aicp-bridge hub for a local one)",
                ),
            };
            problem(error, fix);
        }
        connection = Some(report);
    }

    let bridges: Vec<BridgeReport> = state::read_all(&crate::paths::runtime_dir())
        .into_iter()
        .map(|(state, running)| BridgeReport { state, running })
        .collect();

    let claude_desktop = claude_desktop();
    if !claude_desktop.configs.is_empty() && claude_desktop.registered.is_empty() {
        problem(
            "Claude Desktop is set up here, but aicp-bridge is not registered in it".to_owned(),
            "aicp-bridge install claude-desktop",
        );
    }

    Ok(Report {
        schema: SCHEMA,
        version: env!("CARGO_PKG_VERSION"),
        ok: problems.is_empty(),
        config,
        hub,
        credential,
        connection,
        limits,
        bridges,
        claude_desktop,
        problems,
    })
}

/// Connects, initializes and lists tools, timing the `initialize` round trip.
async fn probe(cfg: &crate::config::HubConfig, patience: Duration) -> ConnectionReport {
    let failed = |e: ClientError| ConnectionReport {
        reachable: !matches!(
            e,
            ClientError::Hub(HubError::Connect(_) | HubError::ConnectTimeout(_))
        ),
        aixp_status: e.aixp_status(),
        rtt_ms: None,
        server_name: None,
        server_version: None,
        protocol_version: None,
        tool_count: None,
        error: Some(e.to_string()),
    };
    let mut client = match HubClient::connect(cfg, patience).await {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let tools = client.list_tools().await;
    let server = client.server.clone();
    let rtt = client.rtt;
    client.close().await;
    let text = |v: &Value| v.as_str().map(str::to_owned);
    ConnectionReport {
        reachable: true,
        aixp_status: AixpStatus::OK,
        rtt_ms: Some((rtt.as_secs_f64() * 1e5).round() / 100.0),
        server_name: text(&server["serverInfo"]["name"]),
        server_version: text(&server["serverInfo"]["version"]),
        protocol_version: text(&server["protocolVersion"]),
        tool_count: tools.as_ref().ok().map(Vec::len),
        error: tools.err().map(|e| format!("tools/list failed: {e}")),
    }
}

fn claude_desktop() -> ClaudeDesktopReport {
    let configs = super::install::claude_desktop_candidates();
    let mut registered = Vec::new();
    for path in &configs {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        for (name, server) in v["mcpServers"].as_object().into_iter().flatten() {
            let command = server["command"].as_str().unwrap_or_default();
            if command.ends_with("aicp-bridge") || command.ends_with("aicp-bridge.exe") {
                registered.push(name.clone());
            }
        }
    }
    ClaudeDesktopReport {
        configs: configs.iter().map(|p| p.display().to_string()).collect(),
        registered,
    }
}

fn print_text(r: &Report) {
    let line = |k: &str, v: String| println!("{k:<13} {v}");
    line(
        "config",
        format!(
            "{}{}",
            r.config.path,
            if r.config.exists {
                ""
            } else {
                " (not created yet)"
            }
        ),
    );
    line("profile", r.config.profile.clone());
    match &r.hub {
        Some(h) => line(
            "hub",
            format!("{} (from {:?})", h.url, h.from).to_lowercase(),
        ),
        None => line("hub", "none".into()),
    }
    let token = match &r.credential.source {
        Some(s) => s.to_string(),
        None => "none".into(),
    };
    line("token", token);
    if let Some(k) = &r.credential.keyring {
        match (k.get("backend"), k.get("unavailable")) {
            (Some(b), _) => line("keyring", b.as_str().unwrap_or("?").to_owned()),
            (_, Some(why)) => line(
                "keyring",
                format!("unavailable: {}", why.as_str().unwrap_or("?")),
            ),
            _ => {}
        }
    }
    if let Some(c) = &r.connection {
        if c.error.is_none() {
            line(
                "connection",
                format!(
                    "ok (AIXP {}), initialize in {:.2} ms: {} {}, protocol {}, {} tools",
                    c.aixp_status,
                    c.rtt_ms.unwrap_or(0.0),
                    c.server_name.as_deref().unwrap_or("?"),
                    c.server_version.as_deref().unwrap_or(""),
                    c.protocol_version.as_deref().unwrap_or("?"),
                    c.tool_count.map_or("?".into(), |n| n.to_string())
                ),
            );
        } else {
            line("connection", format!("failed (AIXP {})", c.aixp_status));
        }
    }
    if let Value::Object(limits) = &r.limits {
        let shown: Vec<String> = limits.iter().map(|(k, v)| format!("{k}={v}")).collect();
        line("limits", shown.join(" "));
    }
    if r.bridges.is_empty() {
        line("bridges", "none running".into());
    }
    for b in &r.bridges {
        let s = &b.state;
        line(
            "bridge",
            format!(
                "pid {} profile {} {}: {}, {} calls relayed, {} refused{}",
                s.pid,
                s.profile,
                s.hub,
                if s.connected_since.is_some() {
                    "connected"
                } else {
                    "not connected"
                },
                s.calls_relayed,
                s.calls_refused,
                if b.running {
                    ""
                } else {
                    " (not running: stale state file)"
                }
            ),
        );
    }
    let cd = &r.claude_desktop;
    line(
        "claude",
        match (cd.configs.is_empty(), cd.registered.is_empty()) {
            (true, _) => "Claude Desktop config not found".into(),
            (false, true) => "not registered".into(),
            (false, false) => format!("registered as {}", cd.registered.join(", ")),
        },
    );
    if r.problems.is_empty() {
        println!("\nall good");
    }
    for p in &r.problems {
        println!("\nproblem: {}\n    fix: {}", p.problem, p.fix);
    }
}
