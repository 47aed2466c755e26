//! The hub's logs: tracing to stderr (stdout carries only the bound URL),
//! every line passed through `aicp_proto::redact`, so a client's token (a JWT)
//! never reaches a log, and the WebSocket library held below trace, where it
//! would dump every frame.

use std::io::{self, Write};

use aicp_proto::redact::{PAYLOAD_LOGGERS, redact};
use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

pub fn init(filter: &str) -> anyhow::Result<()> {
    let mut filter =
        EnvFilter::try_new(filter).with_context(|| format!("bad log filter {filter:?}"))?;
    // Only a filter that reaches trace needs the cap; adding it to a quieter one would
    // raise those crates to debug. A directive for the same target replaces the user's.
    if filter.max_level_hint() == Some(LevelFilter::TRACE) {
        for target in PAYLOAD_LOGGERS {
            filter = filter.add_directive(format!("{target}=debug").parse()?);
        }
    }
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        // A failed write (stderr's reader gone) must not be reported with a
        // panicking eprintln: the panic would kill whatever task was logging,
        // the SIGTERM handler included, and the hub would never stop.
        .log_internal_errors(false)
        .with_writer(|| RedactedStderr)
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging already set up: {e}"))
}

/// One formatted event per write (tracing-subscriber buffers each), so a token
/// never straddles two writes.
struct RedactedStderr;

impl Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stderr().lock().write_all(&redact(buf, &[]))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
