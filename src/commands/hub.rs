//! `aicp-bridge hub …`: a convenience that runs the hub's own binary,
//! `aicp-hub`, installed next to this one, with the same arguments. The hub
//! is a separate program so that its dependencies (SQLite, JWT, metrics) stay
//! out of the binary an MCP host launches.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::Context;

/// The hub binary's file name on this platform.
const HUB_BIN: &str = if cfg!(windows) {
    "aicp-hub.exe"
} else {
    "aicp-hub"
};

/// Replaces this process with `aicp-hub ARGS…` (Unix), so signals, the exit
/// code and the PID are the hub's own; elsewhere runs it and passes its exit code on.
pub fn run(args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let hub = sibling()?;
    let mut command = Command::new(&hub);
    command.args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = command.exec();
        Err(err).with_context(|| format!("cannot run {}", hub.display()))
    }
    #[cfg(not(unix))]
    {
        let status = command
            .status()
            .with_context(|| format!("cannot run {}", hub.display()))?;
        Ok(ExitCode::from(
            status.code().unwrap_or(1).clamp(0, 255) as u8
        ))
    }
}

/// `aicp-hub` in the directory of this executable: never looked up on PATH,
/// so `aicp-bridge hub` runs the hub that was installed with it.
fn sibling() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot locate the aicp-bridge executable")?;
    let hub = me
        .parent()
        .context("the aicp-bridge executable has no directory")?
        .join(HUB_BIN);
    anyhow::ensure!(
        hub.is_file(),
        "{} not found: `aicp-bridge hub` runs the aicp-hub installed next to it (install.sh installs both; from a checkout: cargo build --workspace)",
        hub.display()
    );
    Ok(hub)
}
