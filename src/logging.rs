//! Logs go to stderr (Claude Desktop saves a server's stderr to disk) or to a
//! file (created owner-only), never to stdout. Every line passes through
//! [`Redacting`], which replaces each known secret, as text and as hex, and
//! anything shaped like a JWT with `[REDACTED]`, so a token cannot leak even
//! through a message a peer echoes back at trace level. The WebSocket library
//! never logs below debug, even when the filter asks for trace: at trace it prints whole
//! frames and the upgrade request, `Authorization` header included.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use aicp_proto::redact::{PAYLOAD_LOGGERS, encodings, redact};
use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

pub fn init(filter: &str, log_file: Option<&Path>, secrets: Vec<String>) -> anyhow::Result<()> {
    let mut filter =
        EnvFilter::try_new(filter).with_context(|| format!("bad log filter {filter:?}"))?;
    // Only a filter that reaches trace needs the cap; adding it to a quieter one would
    // raise those crates to debug. A directive for the same target replaces the user's.
    if filter.max_level_hint() == Some(LevelFilter::TRACE) {
        for target in PAYLOAD_LOGGERS {
            filter = filter.add_directive(format!("{target}=debug").parse()?);
        }
    }
    let secrets: Arc<[String]> = secrets
        .into_iter()
        .filter(|s| s.len() >= 4)
        .flat_map(encodings)
        .collect();
    let sink = match log_file {
        Some(path) => Sink::File(Arc::new(Mutex::new(open_private(path)?))),
        None => Sink::Stderr,
    };
    let ansi = log_file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        // A failed write (the host closed stderr) must not be reported with a
        // panicking eprintln from inside whatever task was logging.
        .log_internal_errors(false)
        .with_writer(MakeRedacting { sink, secrets })
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging already set up: {e}"))
}

/// Opens the log file for appending, created 0600 (it may hold hub answers and
/// tool arguments); an existing file is narrowed to 0600 too.
fn open_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make log file {} private", path.display()))?;
    }
    Ok(file)
}

#[derive(Clone)]
enum Sink {
    Stderr,
    File(Arc<Mutex<std::fs::File>>),
}

struct MakeRedacting {
    sink: Sink,
    secrets: Arc<[String]>,
}

impl<'a> MakeWriter<'a> for MakeRedacting {
    type Writer = Redacting;
    fn make_writer(&'a self) -> Redacting {
        Redacting {
            sink: self.sink.clone(),
            secrets: self.secrets.clone(),
        }
    }
}

/// tracing-subscriber formats each event into one buffer and writes it with
/// one call, so a secret never straddles two writes.
pub struct Redacting {
    sink: Sink,
    secrets: Arc<[String]>,
}

impl Write for Redacting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let redacted = redact(buf, &self.secrets);
        match &self.sink {
            Sink::Stderr => io::stderr().lock().write_all(&redacted)?,
            Sink::File(f) => f
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_all(&redacted)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.sink {
            Sink::Stderr => io::stderr().flush(),
            Sink::File(f) => f.lock().unwrap_or_else(|e| e.into_inner()).flush(),
        }
    }
}
