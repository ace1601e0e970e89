//! The sidecar's health endpoint, for a pod's probes: `GET /healthz` (alive) and
//! `GET /readyz` (the sinks are running), each answered with the sidecar's counters as JSON.
//!
//! Served by [`crate::endpoint`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Shared;
use crate::endpoint::{self, Reply};

/// Serves the endpoint on `addr` until the process exits; returns the bound address.
///
/// # Errors
///
/// The address cannot be bound.
pub(super) fn serve(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    endpoint::serve(addr, "chaosflow-health", move |path| answer(path, &shared))
}

fn answer(path: &str, shared: &Shared) -> Reply {
    let ready = shared.ready.load(Ordering::Acquire);
    let (status, ok) = match path {
        "/healthz" | "/livez" => ("200 OK", true),
        "/readyz" if ready => ("200 OK", true),
        "/readyz" => ("503 Service Unavailable", false),
        _ => return Reply::not_found(),
    };
    let body = serde_json::json!({
        "ok": ok,
        "ready": ready,
        "events_read": shared.events_read.load(Ordering::Relaxed),
        "invalid_lines": shared.invalid.load(Ordering::Relaxed),
        "checkpoint": shared.saved_offset(),
    })
    .to_string();
    Reply {
        status,
        content_type: "application/json",
        body,
    }
}
