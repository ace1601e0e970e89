//! The operator's counters and its HTTP endpoint: `GET /metrics` (Prometheus text format),
//! `GET /healthz` (the process answers) and `GET /readyz` (the CRD was found and the
//! experiments are listed: a watch the API refuses keeps the operator unready).
//!
//! A handful of counters does not need a metrics library (nor the endpoint a server framework,
//! see [`crate::endpoint`]): both would cost more memory and build time than the operator.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::crd::Verdict;
use crate::endpoint::{self, Reply};

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

/// Serves the endpoint on `addr` until the process exits; returns the bound address.
///
/// # Errors
///
/// The address cannot be bound.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    endpoint::serve(addr, "chaosflow-metrics", move |path| {
        let text = |status, body: &str| Reply {
            status,
            content_type: "text/plain",
            body: body.into(),
        };
        match path {
            "/metrics" => Reply {
                status: "200 OK",
                content_type: "text/plain; version=0.0.4",
                body: metrics.render(),
            },
            "/healthz" | "/livez" => text("200 OK", "ok\n"),
            "/readyz" if metrics.ready.load(Ordering::Acquire) => text("200 OK", "ready\n"),
            "/readyz" => text(
                "503 Service Unavailable",
                "not ready: the experiments are not listed yet\n",
            ),
            _ => Reply::not_found(),
        }
    })
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
