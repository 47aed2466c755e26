//! Turning SIGTERM and SIGINT (Ctrl-C on Windows) into a cancelled
//! [`CancellationToken`], for both programs (`aicp-bridge serve`, `aicp-hub`):
//! each passes the token down and every loop that must stop has a shutdown arm.
//! Behind the `signals` feature, so the vocabulary alone pulls in no runtime.

use tokio_util::sync::CancellationToken;
use tracing::info;

/// Waits for the first SIGTERM or SIGINT, logs it with what happens next, and cancels.
pub async fn cancel_on_signal(shutdown: CancellationToken, next: &'static str) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: {next}"),
            _ = int.recv() => info!("SIGINT: {next}"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        info!("Ctrl-C: {next}");
    }
    shutdown.cancel();
}
