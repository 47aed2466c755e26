//! Each running `serve` keeps a small JSON file in the runtime directory
//! (`serve-PID.json`): which profile and hub, since when connected, calls
//! relayed and refused. `status` reads them to list the bridges running.
//!
//! The relay only bumps atomics in [`Live`]; a separate task turns them into
//! the file once a second when something changed, so no file I/O happens on
//! the relay's path. The file never holds a token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::guard::Stats;

/// How often the state file is brought up to date.
const WRITE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeState {
    pub pid: u32,
    pub profile: String,
    /// The hub URL with credentials redacted.
    pub hub: String,
    /// Unix milliseconds.
    pub started_at: u64,
    /// Unix milliseconds of the current connection, `None` while not connected.
    pub connected_since: Option<u64>,
    pub calls_relayed: u64,
    pub calls_refused: u64,
    pub lists_from_cache: u64,
}

/// What the relay updates as it goes.
#[derive(Debug, Default)]
pub struct Live {
    relayed: AtomicU64,
    refused: AtomicU64,
    cached: AtomicU64,
    /// Unix milliseconds, 0 while not connected.
    connected_since: AtomicU64,
}

impl Live {
    pub fn record(&self, stats: Stats) {
        self.relayed.store(stats.calls_relayed, Ordering::Relaxed);
        self.refused.store(stats.calls_refused, Ordering::Relaxed);
        self.cached.store(stats.lists_from_cache, Ordering::Relaxed);
    }

    pub fn connected(&self, yes: bool) {
        let since = if yes { aicp_proto::aixp::now_ms() } else { 0 };
        self.connected_since.store(since, Ordering::Relaxed);
    }

    fn snapshot(&self, base: &BridgeState) -> BridgeState {
        let since = self.connected_since.load(Ordering::Relaxed);
        BridgeState {
            connected_since: (since != 0).then_some(since),
            calls_relayed: self.relayed.load(Ordering::Relaxed),
            calls_refused: self.refused.load(Ordering::Relaxed),
            lists_from_cache: self.cached.load(Ordering::Relaxed),
            ..base.clone()
        }
    }
}

pub fn file_for(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("serve-{pid}.json"))
}

/// Keeps `path` up to date until `shutdown`, then removes it.
pub async fn keep_written(
    path: PathBuf,
    base: BridgeState,
    live: Arc<Live>,
    shutdown: CancellationToken,
) {
    let mut last: Option<BridgeState> = None;
    let mut tick = tokio::time::interval(WRITE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = live.snapshot(&base);
        if last.as_ref() != Some(&now) {
            let json = serde_json::to_vec_pretty(&now).expect("state serializes");
            if let Err(e) = crate::paths::write_private(&path, &json) {
                tracing::debug!(path = %path.display(), error = %e, "cannot write the state file");
            }
            last = Some(now);
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// Every state file in `dir`, with whether its process still runs.
pub fn read_all(dir: &Path) -> Vec<(BridgeState, bool)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(BridgeState, bool)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("serve-"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|bytes| serde_json::from_slice::<BridgeState>(&bytes).ok())
        .map(|s| {
            let running = is_running(s.pid);
            (s, running)
        })
        .collect();
    found.sort_by_key(|(s, _)| s.started_at);
    found
}

fn is_running(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        // No portable check without libc; a stale file shows as running until removed.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn written_while_running_and_removed_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_for(dir.path(), std::process::id());
        let base = BridgeState {
            pid: std::process::id(),
            profile: "default".into(),
            hub: "ws://127.0.0.1:1/mcp".into(),
            started_at: aicp_proto::aixp::now_ms(),
            connected_since: None,
            calls_relayed: 0,
            calls_refused: 0,
            lists_from_cache: 0,
        };
        let live = Arc::new(Live::default());
        live.connected(true);
        live.record(Stats {
            calls_relayed: 7,
            calls_refused: 2,
            lists_from_cache: 1,
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(keep_written(path.clone(), base, live, shutdown.clone()));
        for _ in 0..100 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let found = read_all(dir.path());
        assert_eq!(found.len(), 1);
        let (state, running) = &found[0];
        assert!(running);
        assert_eq!(
            (
                state.calls_relayed,
                state.calls_refused,
                state.lists_from_cache
            ),
            (7, 2, 1)
        );
        assert!(state.connected_since.is_some());
        shutdown.cancel();
        task.await.unwrap();
        assert!(!path.exists());
    }
}
