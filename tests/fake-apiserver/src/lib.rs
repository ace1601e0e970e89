//! A loopback fake Kubernetes API server that speaks the real REST and watch protocol (JSON
//! only), for integration tests and benchmarks where no cluster can run.
//!
//! It serves the built-in kinds chaosflow's operator touches plus whatever CRDs are created,
//! with discovery good enough for kubectl and kube-rs, a global resourceVersion, watches
//! (list-then-watch, `sendInitialEvents`, 410 for expired history), merge / JSON / apply
//! patches, status subresources and finalizers.
//!
//! Left out on purpose, so tests must not rely on them:
//! - bodies other than JSON (typed client-go clientsets send protobuf, which gets 415, so
//!   kubectl's imperative `create namespace` fails: use `kubectl create -f`), Table
//!   responses (kubectl prints NAME and AGE only), aggregated discovery, OpenAPI (404, so
//!   kubectl needs `--validate=false`), pagination (`limit` is ignored);
//! - admission, defaulting beyond namespace (`Active`) and pod (`Pending`) phases, schema
//!   validation, CRD conversion (all versions share objects; only `apiVersion` differs);
//! - server-side apply field ownership: apply is a merge patch that creates when missing,
//!   with no managedFields, so fields a manager stops applying stay; strategic merge patch
//!   is a plain merge patch too (lists replace instead of merging by key);
//! - garbage collection of ownerReferences and every controller, so pods never run (tests
//!   move them along through `/status` or [`FakeApiServer::patch_status`]); deleting a
//!   namespace removes its contents at once, finalizers or not;
//! - periodic watch bookmarks, authentication and authorization, TLS.
//!
//! ```no_run
//! let server = fake_apiserver::FakeApiServer::spawn()?;
//! server.write_kubeconfig("/tmp/kubeconfig")?;
//! // run `KUBECONFIG=/tmp/kubeconfig kubectl get pods -A`, an operator, ...
//! println!("{:?}", server.stats());
//! # Ok::<(), std::io::Error>(())
//! ```

mod patch;
mod resources;
mod server;
mod store;

use serde::Serialize;
use serde_json::{Value, json};
use server::Shared;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{At, PatchKind, State, Sub};
use tokio::sync::watch;

/// An API error, rendered on the wire as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code (404, 409, ...).
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub reason: String,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`; boxed to keep `Result<_, ApiError>` small.
    details: Option<Box<Value>>,
}

impl ApiError {
    fn new(code: u16, reason: &str, message: impl fmt::Display) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.to_string(),
            details: None,
        }
    }

    fn about(mut self, res: &resources::Resource, name: &str, kind: &str) -> Self {
        self.details = Some(Box::new(
            json!({"name": name, "group": res.group, "kind": kind}),
        ));
        self
    }

    fn not_found(res: &resources::Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", res.qualified()),
        )
        .about(res, name, &res.plural)
    }

    fn already_exists(res: &resources::Resource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", res.qualified()),
        )
        .about(res, name, &res.plural)
    }

    fn conflict(res: &resources::Resource, name: &str, why: impl fmt::Display) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} {name:?}: {why}",
            res.qualified()
        );
        Self::new(409, "Conflict", message).about(res, name, &res.plural)
    }

    fn invalid(res: &resources::Resource, name: &str, why: impl fmt::Display) -> Self {
        let kind = if res.group.is_empty() {
            res.kind.clone()
        } else {
            format!("{}.{}", res.kind, res.group)
        };
        Self::new(422, "Invalid", format!("{kind} {name:?} is invalid: {why}"))
            .about(res, name, &res.kind)
    }

    fn bad_request(message: impl fmt::Display) -> Self {
        Self::new(400, "BadRequest", message)
    }

    fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// The `meta.k8s.io/v1` `Status` object a real server would send.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = Value::clone(details);
        }
        status
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Request counts since start (or the last [`FakeApiServer::reset_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Every counted request.
    pub total: u64,
    /// By verb: get, list, watch, create, update, patch, delete, deletecollection, and
    /// `other` for unroutable requests.
    pub by_verb: BTreeMap<String, u64>,
    /// By resource (`pods`, `leases.coordination.k8s.io`, `discovery`, `health`), then verb.
    pub by_resource: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every distinct kind of resource request, as RBAC sees it: what a Role must grant.
    pub accesses: BTreeSet<Access>,
}

/// A resource request as RBAC authorizes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Access {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// The API group (`""` for the core group).
    pub group: String,
    /// The resource's plural, with its subresource: `pods`, `chaosexperiments/status`.
    pub resource: String,
    /// The namespace of the request; `None` for cluster-scoped objects and requests across all
    /// namespaces (which only a ClusterRoleBinding grants).
    pub namespace: Option<String>,
    /// A server-side apply: it may create the object, so RBAC wants `create` as well as `patch`.
    pub apply: bool,
}

impl Stats {
    fn record(&mut self, verb: &str, resource: &str) {
        self.total += 1;
        *self.by_verb.entry(verb.into()).or_default() += 1;
        *self
            .by_resource
            .entry(resource.into())
            .or_default()
            .entry(verb.into())
            .or_default() += 1;
    }

    /// Requests with this verb.
    pub fn verb(&self, verb: &str) -> u64 {
        self.by_verb.get(verb).copied().unwrap_or(0)
    }

    /// Requests with this verb on this resource (`pods`, `configmaps`, `jobs.batch`).
    pub fn count(&self, resource: &str, verb: &str) -> u64 {
        self.by_resource
            .get(resource)
            .and_then(|v| v.get(verb))
            .copied()
            .unwrap_or(0)
    }
}

/// How to start a [`FakeApiServer`].
#[derive(Debug, Clone)]
pub struct Builder {
    addr: SocketAddr,
    log: bool,
    history: usize,
    latency: Duration,
}

impl Default for Builder {
    /// Loopback on a free port; per-request logging when `FAKE_APISERVER_LOG` is set (not "0").
    fn default() -> Self {
        let log = std::env::var("FAKE_APISERVER_LOG").is_ok_and(|v| !v.is_empty() && v != "0");
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            history: 100_000,
            latency: Duration::ZERO,
        }
    }
}

impl Builder {
    /// Listens on `addr` instead of `127.0.0.1:0`.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Writes one line per request to stderr.
    pub fn log_requests(mut self, on: bool) -> Self {
        self.log = on;
        self
    }

    /// Keeps the last `events` changes (default 100,000) for watches resuming from an older
    /// resourceVersion; older ones get 410 Gone, as after a real server's compaction.
    pub fn history(mut self, events: usize) -> Self {
        self.history = events.max(1);
        self
    }

    /// Answers every request `latency` late (a watch's first bytes too), as a distant or
    /// loaded API server would: what a client does while its first list is in flight.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Serves on tasks of the current tokio runtime (which must outlive the server).
    pub async fn start(self) -> io::Result<FakeApiServer> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        let server = FakeApiServer::new(&self, listener.local_addr()?, None);
        tokio::spawn(server::serve(listener, server.shared.clone()));
        Ok(server)
    }

    /// Serves on a runtime of its own, for code that is not async.
    pub fn spawn(self) -> io::Result<FakeApiServer> {
        let listener = std::net::TcpListener::bind(self.addr)?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-apiserver")
            .enable_all()
            .build()?;
        let server = FakeApiServer::new(&self, listener.local_addr()?, Some(runtime));
        let shared = server.shared.clone();
        server
            .runtime
            .as_ref()
            .expect("just set")
            .spawn(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => server::serve(listener, shared).await,
                    Err(e) => eprintln!("fake-apiserver: cannot listen: {e}"),
                }
            });
        Ok(server)
    }
}

/// A running fake API server; dropping it stops it (open watches end).
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeApiServer {
    fn new(options: &Builder, addr: SocketAddr, runtime: Option<tokio::runtime::Runtime>) -> Self {
        let (shutdown, stopped) = watch::channel(false);
        let shared = Shared {
            state: Mutex::new(State::new(options.history)),
            stats: Mutex::default(),
            log: options.log,
            latency: options.latency,
            addr,
            shutdown: stopped,
        };
        Self {
            addr,
            shared: Arc::new(shared),
            shutdown,
            runtime,
        }
    }

    /// Starts on `127.0.0.1:<free port>` on the current tokio runtime.
    pub async fn start() -> io::Result<Self> {
        Builder::default().start().await
    }

    /// Starts on `127.0.0.1:<free port>` on a runtime of its own (usable from sync tests).
    pub fn spawn() -> io::Result<Self> {
        Builder::default().spawn()
    }

    /// Options: address, logging.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server: one context `fake`, no credentials, namespace `default`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n\
             \x20   user: fake\n    namespace: default\ncurrent-context: fake\n",
            self.url()
        )
    }

    /// Writes [`Self::kubeconfig`] to `path`, for `KUBECONFIG` or `kubectl --kubeconfig`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Request counts so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats().clone()
    }

    /// Zeroes the request counts.
    pub fn reset_stats(&self) {
        *self.shared.stats() = Stats::default();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.state().resource_version()
    }

    /// Creates or merges in `object` as server-side apply would (its `apiVersion` and `kind`
    /// pick the resource; a namespaced one without `metadata.namespace` goes to `default`).
    pub fn apply(&self, object: Value) -> Result<Value, ApiError> {
        let field = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (name, namespace) = (field("/metadata/name"), field("/metadata/namespace"));
        let mut state = self.shared.state();
        let res = resource(&state, &field("/apiVersion"), &field("/kind"))?;
        let namespace = match (res.namespaced, namespace.is_empty()) {
            (false, _) => String::new(),
            (true, true) => "default".into(),
            (true, false) => namespace,
        };
        if name.is_empty() {
            return state.create(&res, &namespace, object, false);
        }
        state
            .patch(
                At {
                    res: &res,
                    namespace: &namespace,
                    name: &name,
                },
                (PatchKind::Apply, object),
                Sub::Main,
                false,
            )
            .map(|(obj, _)| obj)
    }

    /// One object (`namespace` "" for cluster-scoped kinds), as a GET would return it.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.shared.state();
        let res = resource(&state, api_version, kind).ok()?;
        state
            .get(At {
                res: &res,
                namespace,
                name,
            })
            .ok()
    }

    /// The objects of a kind, in one namespace or (`None`) all of them.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let state = self.shared.state();
        let Ok(res) = resource(&state, api_version, kind) else {
            return Vec::new();
        };
        let filter = store::Filter {
            namespace: namespace.map(String::from),
            selector: Default::default(),
        };
        state
            .matching(&res, &filter)
            .map(|obj| res.view(obj))
            .collect()
    }

    /// Merges `status` into an object's status through its status subresource (or the object
    /// itself for kinds without one), as a controller or kubelet would.
    pub fn patch_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let mut state = self.shared.state();
        let res = resource(&state, api_version, kind)?;
        let sub = if res.status { Sub::Status } else { Sub::Main };
        let patch = (PatchKind::Merge, json!({"status": status}));
        state
            .patch(
                At {
                    res: &res,
                    namespace,
                    name,
                },
                patch,
                sub,
                false,
            )
            .map(|(obj, _)| obj)
    }

    /// Deletes an object as `DELETE` would (finalizers only mark it).
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let mut state = self.shared.state();
        let res = resource(&state, api_version, kind)?;
        state
            .delete(
                At {
                    res: &res,
                    namespace,
                    name,
                },
                &json!({}),
                false,
            )
            .map(|(obj, _)| obj)
    }

    /// Stops serving; the same as dropping it.
    pub fn shutdown(self) {}
}

fn resource(state: &State, api_version: &str, kind: &str) -> Result<resources::Resource, ApiError> {
    state.lookup_kind(api_version, kind).ok_or_else(|| {
        ApiError::bad_request(format!("no resource is served for {api_version} {kind}"))
    })
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
