//! The operator's counters and its HTTP endpoint: `GET /metrics` (Prometheus text format),
//! `GET /healthz` (the process answers) and `GET /readyz` (the CRD was found and the
//! controller runs).
//!
//! A handful of counters does not need a metrics library, and a few lines of HTTP/1.1 do not
//! need a server framework: both would cost more memory and build time than the operator.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::crd::Verdict;

/// What the operator counts.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    reconcile_micros: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
    runs: Mutex<BTreeMap<&'static str, u64>>,
    /// The controller runs (readiness).
    pub ready: AtomicBool,
}

impl Metrics {
    /// One reconcile took `took`.
    pub fn reconciled(&self, took: Duration) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.reconcile_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// A reconcile failed for `reason` (an error's metric label).
    pub fn failed(&self, reason: &'static str) {
        *self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(reason)
            .or_default() += 1;
    }

    /// A run ended with `verdict`.
    pub fn run_ended(&self, verdict: Verdict) {
        let label = match verdict {
            Verdict::Completed => "completed",
            Verdict::Failed => "failed",
            Verdict::Deviated => "deviated",
            Verdict::Aborted => "aborted",
            Verdict::Interrupted => "interrupted",
        };
        *self
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(label)
            .or_default() += 1;
    }

    /// The Prometheus text exposition of the counters.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reconciles = self.reconciles.load(Ordering::Relaxed);
        let seconds = self.reconcile_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP chaosflow_operator_reconciles_total Reconciles of ChaosToolkitExperiments.\n# TYPE chaosflow_operator_reconciles_total counter\nchaosflow_operator_reconciles_total {reconciles}"
        );
        let _ = writeln!(
            out,
            "# HELP chaosflow_operator_reconcile_seconds_total Time spent reconciling.\n# TYPE chaosflow_operator_reconcile_seconds_total counter\nchaosflow_operator_reconcile_seconds_total {seconds}"
        );
        let _ = writeln!(
            out,
            "# HELP chaosflow_operator_reconcile_failures_total Failed reconciles, by reason.\n# TYPE chaosflow_operator_reconcile_failures_total counter"
        );
        for (reason, n) in &*self.failures.lock().unwrap_or_else(PoisonError::into_inner) {
            let _ = writeln!(
                out,
                "chaosflow_operator_reconcile_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP chaosflow_operator_runs_total Experiment runs that ended, by verdict.\n# TYPE chaosflow_operator_runs_total counter"
        );
        for (verdict, n) in &*self.runs.lock().unwrap_or_else(PoisonError::into_inner) {
            let _ = writeln!(
                out,
                "chaosflow_operator_runs_total{{verdict=\"{verdict}\"}} {n}"
            );
        }
        out
    }
}

/// Serves the endpoint on `addr` until the runtime stops; returns the bound address.
///
/// # Errors
///
/// The address cannot be bound.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let answered =
                    tokio::time::timeout(Duration::from_secs(5), answer(stream, &metrics)).await;
                if let Ok(Err(e)) = answered {
                    tracing::debug!(error = %e, "metrics endpoint: {e}");
                }
            });
        }
    });
    Ok(bound)
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
        match stream.read(&mut buf).await? {
            0 => break,
            n => request.extend_from_slice(&buf[..n]),
        }
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let ready = metrics.ready.load(Ordering::Acquire);
    let (status, kind, body) = match (method, path) {
        (Some(b"GET" | b"HEAD"), Some(b"/metrics")) => {
            ("200 OK", "text/plain; version=0.0.4", metrics.render())
        }
        (Some(b"GET" | b"HEAD"), Some(b"/healthz" | b"/livez")) => {
            ("200 OK", "text/plain", "ok\n".into())
        }
        (Some(b"GET" | b"HEAD"), Some(b"/readyz")) if ready => {
            ("200 OK", "text/plain", "ready\n".into())
        }
        (Some(b"GET" | b"HEAD"), Some(b"/readyz")) => (
            "503 Service Unavailable",
            "text/plain",
            "not ready: the controller has not started\n".into(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if method != Some(b"HEAD") {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text() {
        let m = Metrics::default();
        m.reconciled(Duration::from_millis(1500));
        m.failed("kube");
        m.failed("kube");
        m.run_ended(Verdict::Deviated);
        let text = m.render();
        assert!(
            text.contains("chaosflow_operator_reconciles_total 1\n"),
            "{text}"
        );
        assert!(text.contains("chaosflow_operator_reconcile_seconds_total 1.5\n"));
        assert!(text.contains("chaosflow_operator_reconcile_failures_total{reason=\"kube\"} 2\n"));
        assert!(text.contains("chaosflow_operator_runs_total{verdict=\"deviated\"} 1\n"));
    }
}
