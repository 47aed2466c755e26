//! Runs the built binary's command-line commands with HOME, XDG dirs and the
//! runtime dir in one temp dir, kept across commands, so a test is a user's
//! session on a clean machine and never touches the developer's own settings.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::bridge::BIN;

pub struct Cli {
    pub home: tempfile::TempDir,
    env: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl Cli {
    pub fn new() -> Cli {
        Cli {
            home: tempfile::tempdir().unwrap(),
            env: vec![("AICP_KEYRING".into(), "none".into())],
        }
    }

    /// Sets an environment variable for every later command.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Cli {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.home.path().join(rel)
    }

    pub fn config_file(&self) -> PathBuf {
        self.path("config/aicp-bridge/config.toml")
    }

    /// The environment this session's commands run with, for scripts run under `keyctl session -` and the like.
    pub fn apply(&self, cmd: &mut Command) {
        let home = self.home.path();
        cmd.env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_RUNTIME_DIR", home.join("run"));
        for key in [
            "AICP_HUB_URL",
            "AICP_TOKEN",
            "AICP_LOG",
            "AICP_PROFILE",
            "AICP_CONFIG",
            "AICP_KEYRING",
            "AICP_CAPABILITIES",
        ] {
            cmd.env_remove(key);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        self.apply(&mut cmd);
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, None).await
    }

    pub async fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.command(args);
        output(&mut cmd, stdin).await
    }
}

pub async fn output(cmd: &mut Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("command finished within a minute")
        .unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether a program is on PATH: the keyring tests need keyctl, dbus-run-session, gnome-keyring-daemon.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|dir| Path::new(&dir).join(program).exists()))
        .unwrap_or(false)
}

/// Skips a test whose tools are missing here, but never in CI, which must have them.
pub fn require(programs: &[&str]) -> bool {
    let missing: Vec<&&str> = programs.iter().filter(|p| !have(p)).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide {missing:?} (.ci/run installs them)"
    );
    eprintln!("SKIPPED: {missing:?} not installed (apt-get install keyutils dbus gnome-keyring)");
    false
}
