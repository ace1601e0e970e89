//! A tiny HTTP endpoint for probes and metrics (the sidecar's `/healthz`, the operator's
//! `/metrics`): a thread of its own answers `GET` and `HEAD` with what a handler returns.
//!
//! A few lines of HTTP/1.0 instead of a server framework: requests are rare and small, and a
//! framework would cost more memory than the sidecar itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status line, e.g. `200 OK`.
    pub status: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Reply {
    /// `404 Not Found`.
    pub fn not_found() -> Self {
        Self {
            status: "404 Not Found",
            content_type: "text/plain",
            body: "not found\n".into(),
        }
    }
}

/// Serves `handler` (given the request path) on `addr` until the process exits, on a thread
/// named `name`; returns the bound address.
///
/// # Errors
///
/// The address cannot be bound or the thread cannot start.
pub fn serve(
    addr: SocketAddr,
    name: &str,
    handler: impl Fn(&str) -> Reply + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &handler) {
                    tracing::debug!(error = %e, "endpoint: {e}");
                }
            }
        })?;
    Ok(bound)
}

fn answer(mut stream: TcpStream, handler: &impl Fn(&str) -> Reply) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        match stream.read(&mut buf)? {
            0 => break,
            n => request.extend_from_slice(&buf[..n]),
        }
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path) = (parts.next(), parts.next().unwrap_or_default());
    let reply = match method {
        Some("GET" | "HEAD") => handler(path),
        _ => Reply::not_found(),
    };
    write!(
        stream,
        "HTTP/1.0 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    )?;
    if method != Some("HEAD") {
        stream.write_all(reply.body.as_bytes())?;
    }
    stream.flush()
}
