//! The `serve` command: what an MCP host runs. Builds the validated config,
//! sets up logging (stderr or a file, secrets redacted), installs the signal
//! handlers that start a clean shutdown, and runs the relay on stdio.

use std::time::Duration;

use tokio::io::BufReader;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::ServeArgs;
use crate::config::{ServeConfig, redact_url};
use std::sync::Arc;

use crate::relay::{self, host};
use aicp_proto::shutdown;

use crate::{logging, paths, state, tls};

pub fn serve_main(args: ServeArgs) -> anyhow::Result<()> {
    tls::install_default_provider();
    let cfg = ServeConfig::from_args(&args)?;
    let secrets = cfg
        .hub
        .credential
        .iter()
        .map(|c| secrecy::ExposeSecret::expose_secret(&c.token).to_owned())
        .collect();
    logging::init(&args.log_level, args.log_file.as_deref(), secrets)?;
    if let Some(cred) = &cfg.hub.credential {
        cred.warn_if_exposed();
    }
    info!(
        hub = %redact_url(&cfg.hub.url),
        token = cfg.hub.credential.as_ref().map_or("none".to_owned(), |c| c.source.to_string()),
        "aicp-bridge {} serving MCP on stdio",
        env!("CARGO_PKG_VERSION")
    );

    // One thread: the relay is I/O-bound, and a single-threaded runtime has
    // no cross-thread wakeups on the hot path.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let state_path = state::file_for(&paths::runtime_dir(), std::process::id());
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(shutdown::cancel_on_signal(
            shutdown.clone(),
            "shutting down",
        ));
        let live = Arc::new(state::Live::default());
        let base = state::BridgeState {
            pid: std::process::id(),
            profile: cfg.profile.clone(),
            hub: redact_url(&cfg.hub.url),
            started_at: aicp_proto::aixp::now_ms(),
            connected_since: None,
            calls_relayed: 0,
            calls_refused: 0,
            lists_from_cache: 0,
        };
        let state_done = CancellationToken::new();
        let writer = tokio::spawn(state::keep_written(
            state_path.clone(),
            base,
            live.clone(),
            state_done.clone(),
        ));
        let (input, output) = host::stdio();
        let input = BufReader::with_capacity(64 * 1024, input);
        let result = relay::run(&cfg, input, output, live, shutdown).await;
        state_done.cancel();
        let _ = writer.await;
        result
    });
    // In case the writer task did not get to it.
    let _ = std::fs::remove_file(&state_path);
    // A read of stdin may be parked in a blocking thread (after a signal the
    // host has not closed it); do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(50));
    info!("aicp-bridge stopped");
    result
}
