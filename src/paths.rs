//! Where aicp-bridge keeps things, per platform (the `directories` crate):
//! the config file, and the runtime directory where each running `serve`
//! leaves a small state file for `status`.

use std::path::{Path, PathBuf};

use directories::ProjectDirs;

/// Environment variable naming the config file, below `--config`.
pub const CONFIG_ENV: &str = "AICP_CONFIG";

fn project() -> Option<ProjectDirs> {
    ProjectDirs::from("", "", "aicp-bridge")
}

/// `--config` > `AICP_CONFIG` > the platform config dir (`~/.config/aicp-bridge/config.toml`
/// on Linux, `~/Library/Application Support/aicp-bridge/config.toml` on macOS,
/// `%APPDATA%\aicp-bridge\config\config.toml` on Windows).
pub fn config_file(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_owned();
    }
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return path.into();
    }
    match project() {
        Some(dirs) => dirs.config_dir().join("config.toml"),
        None => PathBuf::from("aicp-bridge.toml"),
    }
}

/// Runtime state of running bridges: `$XDG_RUNTIME_DIR/aicp-bridge` where
/// there is one, else the platform's local data dir under `run/`.
pub fn runtime_dir() -> PathBuf {
    match project() {
        Some(dirs) => match dirs.runtime_dir() {
            Some(run) => run.to_owned(),
            None => dirs.data_local_dir().join("run"),
        },
        None => std::env::temp_dir().join("aicp-bridge"),
    }
}

/// Writes `contents` to `path` atomically, readable by the owner only: a
/// temp file in the same directory, fsynced, then renamed over the target,
/// so a crash or a full disk leaves either the old file or the new one.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_write_replaces_atomically_with_mode_600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }
}
