//! Logs go to stderr (Claude Desktop saves a server's stderr to disk) or to a
//! file, never to stdout. Every line passes through [`Redacting`], which
//! replaces each known secret with `[REDACTED]`, so a token cannot leak even
//! through a message a hub echoes back at trace level.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

pub fn init(filter: &str, log_file: Option<&Path>, secrets: Vec<String>) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(filter).with_context(|| format!("bad log filter {filter:?}"))?;
    let secrets: Arc<[String]> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
    let sink = match log_file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            Sink::File(Arc::new(Mutex::new(file)))
        }
        None => Sink::Stderr,
    };
    let ansi = log_file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(MakeRedacting { sink, secrets })
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging already set up: {e}"))
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

fn redact<'b>(buf: &'b [u8], secrets: &[String]) -> std::borrow::Cow<'b, [u8]> {
    let mut out = std::borrow::Cow::Borrowed(buf);
    for secret in secrets {
        let s = secret.as_bytes();
        if out.windows(s.len()).any(|w| w == s) {
            let text = String::from_utf8_lossy(&out).replace(secret.as_str(), "[REDACTED]");
            out = std::borrow::Cow::Owned(text.into_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_of_every_secret() {
        let secrets = vec!["tok-123".to_owned(), "other-secret".to_owned()];
        let out = redact(b"a tok-123 b tok-123 c other-secret", &secrets);
        assert_eq!(&*out, b"a [REDACTED] b [REDACTED] c [REDACTED]");
        assert!(matches!(
            redact(b"clean line", &secrets),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
