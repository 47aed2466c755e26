//! `install claude-desktop` / `uninstall claude-desktop`: add or remove our
//! entry under `mcpServers` in Claude Desktop's config, the way a careful
//! person would: find the file where the app reads it, refuse if that is
//! ambiguous, back it up, change only `mcpServers.<name>`, keep every other
//! key as it was written, write a temp file and rename it, read it back to
//! check. Also prints the equivalent for other hosts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use indexmap::IndexMap;
use serde_json::value::RawValue;

use crate::cli::{InstallArgs, InstallHost};

type Object = IndexMap<String, Box<RawValue>>;

pub fn install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let InstallHost::ClaudeDesktop = args.host;
    let path = locate(args.config_path.as_deref())?;
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let entry = entry_for(&exe, args.profile.as_deref());
    let before = read(&path)?;
    let after = with_server(before.as_deref(), &args.name, Some(&entry))?;
    if args.dry_run {
        println!("would write {}:\n{after}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    write(&path, before.as_deref(), &after)?;
    let check = read(&path)?.unwrap_or_default();
    let servers = servers_in(&check)?;
    anyhow::ensure!(
        servers.get(&args.name).map(|v| v.get()) == Some(entry.as_str()),
        "wrote {} but reading it back does not show the entry; the backup is beside it",
        path.display()
    );
    println!("registered \"{}\" in {}", args.name, path.display());
    println!("  {entry}");
    warn_if_running();
    print_other_hosts(&exe, &args.name, args.profile.as_deref());
    Ok(ExitCode::SUCCESS)
}

pub fn uninstall(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let InstallHost::ClaudeDesktop = args.host;
    let path = locate(args.config_path.as_deref())?;
    let Some(before) = read(&path)? else {
        println!("nothing to remove: {} does not exist", path.display());
        return Ok(ExitCode::SUCCESS);
    };
    if !servers_in(&before)?.contains_key(&args.name) {
        println!(
            "nothing to remove: no \"{}\" under mcpServers in {}",
            args.name,
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let after = with_server(Some(&before), &args.name, None)?;
    if args.dry_run {
        println!("would write {}:\n{after}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    write(&path, Some(&before), &after)?;
    anyhow::ensure!(
        !servers_in(&read(&path)?.unwrap_or_default())?.contains_key(&args.name),
        "wrote {} but the entry is still there",
        path.display()
    );
    println!("removed \"{}\" from {}", args.name, path.display());
    warn_if_running();
    Ok(ExitCode::SUCCESS)
}

/// Claude Desktop's config files that exist, where the app reads them: the
/// classic location on every OS, and on Windows the MSIX package's as well.
pub fn claude_desktop_candidates() -> Vec<PathBuf> {
    let Some(base) = directories::BaseDirs::new() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let classic = base
        .config_dir()
        .join("Claude")
        .join("claude_desktop_config.json");
    if classic.exists() || classic.parent().is_some_and(Path::exists) {
        found.push(classic);
    }
    if cfg!(windows) {
        let packages = base.data_local_dir().join("Packages");
        if let Ok(entries) = std::fs::read_dir(&packages) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("Claude_") {
                    let path = e
                        .path()
                        .join("LocalCache/Roaming/Claude/claude_desktop_config.json");
                    if path.parent().is_some_and(Path::exists) {
                        found.push(path);
                    }
                }
            }
        }
    }
    found
}

/// The one config file to change, or why there is not exactly one.
fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let mut found = claude_desktop_candidates();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => match directories::BaseDirs::new() {
            // Not installed yet, or never started: the classic place is where it will look.
            Some(base) => Ok(base
                .config_dir()
                .join("Claude")
                .join("claude_desktop_config.json")),
            None => bail!("cannot find your home directory; pass --config-path"),
        },
        _ => bail!(
            "Claude Desktop has more than one config here ({}); pass --config-path with the one the app uses",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The mcpServers entry: this binary's absolute path, `serve`, and the profile.
fn entry_for(exe: &Path, profile: Option<&str>) -> String {
    let mut args = vec!["serve".to_owned()];
    if let Some(p) = profile {
        args.extend(["--profile".to_owned(), p.to_owned()]);
    }
    serde_json::json!({ "command": exe.to_string_lossy(), "args": args }).to_string()
}

fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn servers_in(text: &str) -> anyhow::Result<Object> {
    let top: Object =
        serde_json::from_str(text).context("Claude Desktop's config is not a JSON object")?;
    match top.get("mcpServers") {
        Some(raw) => serde_json::from_str(raw.get()).context("mcpServers is not a JSON object"),
        None => Ok(Object::new()),
    }
}

/// The config text with `mcpServers.<name>` set to `entry` (or removed). Every
/// other member keeps its original text and position.
fn with_server(text: Option<&str>, name: &str, entry: Option<&str>) -> anyhow::Result<String> {
    let mut top: Object = match text {
        Some(t) if !t.trim().is_empty() => {
            serde_json::from_str(t).context("Claude Desktop's config is not a JSON object")?
        }
        _ => Object::new(),
    };
    let mut servers = servers_in(text.filter(|t| !t.trim().is_empty()).unwrap_or("{}"))?;
    match entry {
        Some(entry) => {
            servers.insert(name.to_owned(), RawValue::from_string(entry.to_owned())?);
        }
        None => {
            servers.shift_remove(name);
        }
    }
    top.insert(
        "mcpServers".to_owned(),
        serde_json::value::to_raw_value(&servers)?,
    );
    Ok(serde_json::to_string_pretty(&top)? + "\n")
}

fn write(path: &Path, before: Option<&str>, after: &str) -> anyhow::Result<()> {
    if let Some(before) = before {
        let stamp = aicp_proto::aixp::now_ms() / 1000;
        let backup = path.with_extension(format!("json.bak-{stamp}"));
        crate::paths::write_private(&backup, before.as_bytes())
            .with_context(|| format!("cannot back up {}", path.display()))?;
        println!("backed up the previous config to {}", backup.display());
    }
    crate::paths::write_private(path, after.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn warn_if_running() {
    let running = cfg!(target_os = "linux")
        && std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim().eq_ignore_ascii_case("claude"))
            });
    if running {
        eprintln!(
            "warning: Claude Desktop seems to be running; quit and reopen it to load the change"
        );
    } else {
        eprintln!("if Claude Desktop is running, quit and reopen it to load the change");
    }
}

fn print_other_hosts(exe: &Path, name: &str, profile: Option<&str>) {
    let exe = exe.display();
    let profile_args = profile
        .map(|p| format!(" --profile {p}"))
        .unwrap_or_default();
    println!("\nother hosts:");
    println!("  Claude Code:  claude mcp add {name} -- {exe} serve{profile_args}");
    println!(
        "  any host with an mcpServers config:\n    \"{name}\": {}",
        entry_for(Path::new(&exe.to_string()), profile)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
  "globalShortcut": "Ctrl+Space",
  "mcpServers": {
    "files": { "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], "env": {"X": "1"} }
  },
  "futureSetting": { "nested": [1, 2.50, "x"] }
}"#;

    #[test]
    fn adds_our_entry_and_keeps_every_other_member_verbatim() {
        let out = with_server(
            Some(CONFIG),
            "aicp",
            Some(r#"{"command":"/bin/aicp-bridge","args":["serve"]}"#),
        )
        .unwrap();
        for kept in [
            r#""Ctrl+Space""#,
            r#"["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]"#,
            r#"[1, 2.50, "x"]"#,
        ] {
            assert!(out.contains(kept), "{kept} changed:\n{out}");
        }
        let servers = servers_in(&out).unwrap();
        assert_eq!(servers.keys().collect::<Vec<_>>(), ["files", "aicp"]);
        let top: Object = serde_json::from_str(&out).unwrap();
        assert_eq!(
            top.keys().collect::<Vec<_>>(),
            ["globalShortcut", "mcpServers", "futureSetting"]
        );
        // And removing it gives back the same servers.
        let back = with_server(Some(&out), "aicp", None).unwrap();
        assert_eq!(
            servers_in(&back).unwrap().keys().collect::<Vec<_>>(),
            ["files"]
        );
    }

    #[test]
    fn an_empty_or_missing_config_gets_just_our_entry() {
        let out = with_server(None, "aicp", Some(r#"{"command":"x","args":["serve"]}"#)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["mcpServers"]["aicp"]["args"][0], "serve");
        assert!(
            with_server(Some("[1]"), "aicp", None).is_err(),
            "not an object: refused, not overwritten"
        );
    }

    #[test]
    fn the_entry_has_the_absolute_path_and_the_profile() {
        let e: serde_json::Value = serde_json::from_str(&entry_for(
            Path::new("/opt/aicp/bin/aicp-bridge"),
            Some("work"),
        ))
        .unwrap();
        assert_eq!(e["command"], "/opt/aicp/bin/aicp-bridge");
        assert_eq!(e["args"], serde_json::json!(["serve", "--profile", "work"]));
    }
}
