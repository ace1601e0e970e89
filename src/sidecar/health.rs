//! The sidecar's health endpoint, for a pod's probes: `GET /healthz` (alive) and
//! `GET /readyz` (the sinks are running), each answered with the sidecar's counters as JSON.
//!
//! A few lines of HTTP/1.0 on a thread of its own: probes are rare, and a server framework
//! would cost more memory than the whole sidecar.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Shared;

/// Serves the endpoint on `addr` until the process exits; returns the bound address.
///
/// # Errors
///
/// The address cannot be bound.
pub(super) fn serve(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("chaosflow-health".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &shared) {
                    tracing::debug!(error = %e, "health probe: {e}");
                }
            }
        })?;
    Ok(bound)
}

fn answer(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
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
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let ready = shared.ready.load(Ordering::Acquire);
    let (status, ok) = match (method, path) {
        (Some(b"GET" | b"HEAD"), Some(b"/healthz" | b"/livez")) => ("200 OK", true),
        (Some(b"GET" | b"HEAD"), Some(b"/readyz")) if ready => ("200 OK", true),
        (Some(b"GET" | b"HEAD"), Some(b"/readyz")) => ("503 Service Unavailable", false),
        _ => ("404 Not Found", false),
    };
    let body = serde_json::json!({
        "ok": ok,
        "ready": ready,
        "events_read": shared.events_read.load(Ordering::Relaxed),
        "invalid_lines": shared.invalid.load(Ordering::Relaxed),
        "checkpoint": shared.saved_offset(),
    })
    .to_string();
    write!(
        stream,
        "HTTP/1.0 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
