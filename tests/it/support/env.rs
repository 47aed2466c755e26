//! The environment every process a test starts gets, and how long a test
//! waits. Shared by the bridge's tests and the hub's (which include this file
//! by path), so neither ever reads the developer's own settings or keyring.

use std::time::Duration;

/// How long a test waits for one expected message before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// What every process a test starts gets (the bridge, the hub, an SDK host,
/// the Inspector): none of the developer's `AICP_*` settings, no
/// real keyring, and a temp home with its own config, data and runtime dirs.
/// The dir lives as long as the returned value.
pub fn isolate(cmd: &mut tokio::process::Command) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    cmd.env_remove("AICP_HUB_URL")
        .env_remove("AICP_TOKEN")
        .env_remove("AICP_LOG")
        .env_remove("AICP_PROFILE")
        .env_remove("AICP_CONFIG")
        // Never the developer's own keyring; the keyring tests opt in.
        .env("AICP_KEYRING", "none")
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("XDG_RUNTIME_DIR", home.path().join("run"));
    home
}
