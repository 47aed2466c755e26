//! The host side: MCP's stdio transport is one JSON-RPC message per line.
//!
//! [`LineReader`] reads lines with a size limit: a line over the limit is
//! skipped to its end while only its first bytes are kept, so its id can still
//! be found and the refusal reaches the request that waits for it.
//! [`write_lines`] is the only writer of stdout: it keeps order, writes every
//! message as exactly one line and flushes when it has nothing more queued.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use aicp_proto::wire::{self, Id};

/// How much of an oversized line is kept to look for its id.
const KEPT_PREFIX: usize = 64 * 1024;

pub type HostReader = Box<dyn AsyncRead + Unpin + Send>;
pub type HostWriter = Box<dyn AsyncWrite + Unpin + Send>;

/// This process's stdin and stdout as async streams. tokio's own stdio does
/// every read and write on a blocking thread, which costs a thread handoff
/// per message each way; when the host gave us a pipe or a socket (as every
/// MCP host does), the descriptors are driven by the reactor directly. A
/// terminal or a regular file falls back to tokio's stdio. Must be called
/// inside a runtime.
pub fn stdio() -> (HostReader, HostWriter) {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let input = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .and_then(unix::reader);
        let output = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .and_then(unix::writer);
        (
            input.unwrap_or_else(|| Box::new(tokio::io::stdin())),
            output.unwrap_or_else(|| Box::new(tokio::io::stdout())),
        )
    }
    #[cfg(not(unix))]
    {
        (Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout()))
    }
}

#[cfg(unix)]
mod unix {
    use std::fs::File;
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::FileTypeExt;

    use tokio::net::unix::pipe;

    use super::{HostReader, HostWriter};

    enum Kind {
        Fifo,
        Socket,
    }

    fn kind(fd: &OwnedFd) -> Option<Kind> {
        let file_type = File::from(fd.try_clone().ok()?)
            .metadata()
            .ok()?
            .file_type();
        if file_type.is_fifo() {
            Some(Kind::Fifo)
        } else if file_type.is_socket() {
            Some(Kind::Socket)
        } else {
            None
        }
    }

    fn socket(fd: OwnedFd) -> Option<tokio::net::UnixStream> {
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true).ok()?;
        tokio::net::UnixStream::from_std(std).ok()
    }

    pub(super) fn reader(fd: OwnedFd) -> Option<HostReader> {
        match kind(&fd)? {
            Kind::Fifo => Some(Box::new(pipe::Receiver::from_file(File::from(fd)).ok()?)),
            Kind::Socket => Some(Box::new(socket(fd)?)),
        }
    }

    pub(super) fn writer(fd: OwnedFd) -> Option<HostWriter> {
        match kind(&fd)? {
            Kind::Fifo => Some(Box::new(pipe::Sender::from_file(File::from(fd)).ok()?)),
            Kind::Socket => Some(Box::new(socket(fd)?)),
        }
    }
}

#[derive(Debug)]
pub enum Line {
    Text(String),
    /// Longer than the limit; `len` counts every byte up to the newline.
    TooLong {
        len: usize,
        id: Option<Id>,
    },
    NotUtf8 {
        id: Option<Id>,
    },
}

pub struct LineReader<R> {
    inner: R,
    limit: usize,
    buf: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            limit,
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at end of input. A last line without a newline still counts.
    pub async fn next_line(&mut self) -> io::Result<Option<Line>> {
        self.buf.clear();
        let mut total = 0usize;
        let mut overflow = false;
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if total == 0 {
                    return Ok(None);
                }
                break;
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            total += take;
            if !overflow {
                // Stop keeping bytes once even a CRLF ending cannot bring the
                // line back under the limit; the exact check is made at the end.
                if total > self.limit + 2 {
                    overflow = true;
                    let room = KEPT_PREFIX.saturating_sub(self.buf.len()).min(take);
                    self.buf.extend_from_slice(&chunk[..room]);
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.inner.consume(take);
            if done {
                break;
            }
        }
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        if overflow || self.buf.len() > self.limit {
            return Ok(Some(Line::TooLong {
                len: total,
                id: wire::extract_id(&self.buf),
            }));
        }
        match String::from_utf8(std::mem::take(&mut self.buf)) {
            Ok(text) => Ok(Some(Line::Text(text))),
            Err(e) => Ok(Some(Line::NotUtf8 {
                id: wire::extract_id(e.as_bytes()),
            })),
        }
    }
}

/// Writes each message as one line until the channel closes. Valid JSON can
/// hold a raw line break only as whitespace between tokens (inside strings it
/// must be escaped), so a pretty-printed message from a hub is made one line
/// by turning those breaks into spaces.
pub async fn write_lines<W: AsyncWrite + Unpin>(
    out: W,
    mut rx: mpsc::Receiver<String>,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    while let Some(msg) = rx.recv().await {
        write_one(&mut out, msg).await?;
        // Batch whatever is already queued into one flush.
        while let Ok(msg) = rx.try_recv() {
            write_one(&mut out, msg).await?;
        }
        out.flush().await?;
    }
    out.flush().await
}

async fn write_one<W: AsyncWrite + Unpin>(out: &mut BufWriter<W>, msg: String) -> io::Result<()> {
    let msg = if msg.bytes().any(|b| b == b'\n' || b == b'\r') {
        msg.replace(['\n', '\r'], " ")
    } else {
        msg
    };
    out.write_all(msg.as_bytes()).await?;
    out.write_all(b"\n").await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], limit: usize) -> Vec<Line> {
        // A tiny buffer makes lines span several fill_buf calls.
        let reader = tokio::io::BufReader::with_capacity(7, input);
        let mut lr = LineReader::new(reader, limit);
        let mut out = Vec::new();
        while let Some(l) = lr.next_line().await.unwrap() {
            out.push(l);
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_the_last_one_without_newline() {
        let got = lines(b"{\"a\":1}\r\n\n{\"b\":2}", 100).await;
        let texts: Vec<_> = got
            .iter()
            .map(|l| match l {
                Line::Text(t) => t.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["{\"a\":1}", "", "{\"b\":2}"]);
    }

    #[tokio::test]
    async fn oversized_line_is_skipped_whole_and_keeps_its_id() {
        let big = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":42,\"method\":\"x\",\"params\":\"{}\"}}\n{{\"ok\":1}}\n",
            "y".repeat(500)
        );
        let got = lines(big.as_bytes(), 100).await;
        assert_eq!(got.len(), 2);
        match &got[0] {
            Line::TooLong { len, id } => {
                assert_eq!(*len, big.find('\n').unwrap() + 1);
                assert_eq!(id.as_ref().unwrap().as_json(), "42");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&got[1], Line::Text(t) if t == "{\"ok\":1}"));
    }

    #[tokio::test]
    async fn exactly_at_the_limit_passes() {
        let line = "x".repeat(100);
        let got = lines(format!("{line}\r\n").as_bytes(), 100).await;
        assert!(matches!(&got[0], Line::Text(t) if t.len() == 100));
        let got = lines(format!("{line}x\n").as_bytes(), 100).await;
        assert!(matches!(&got[0], Line::TooLong { len: 102, .. }));
    }

    #[tokio::test]
    async fn invalid_utf8_is_reported_with_its_id() {
        let got = lines(b"{\"id\":\"z\",\"method\":\"\xff\"}\n", 100).await;
        assert!(matches!(&got[0], Line::NotUtf8 { id: Some(id) } if id.as_json() == "\"z\""));
    }

    #[tokio::test]
    async fn writer_makes_one_line_per_message_in_order() {
        let (tx, rx) = mpsc::channel(8);
        let mut out = Vec::new();
        tx.send("{\n  \"a\": \"x\\ny\"\n}".to_owned())
            .await
            .unwrap();
        tx.send("{\"b\":2}".to_owned()).await.unwrap();
        drop(tx);
        write_lines(&mut out, rx).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["a"], "x\ny");
        assert_eq!(lines[1], "{\"b\":2}");
    }
}
