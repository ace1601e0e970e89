//! The HTTP side: accepting connections, routing REST paths to the store, discovery,
//! streaming watches, and per-request accounting.

use crate::resources::{self, Resource};
use crate::store::{At, Filter, PatchKind, Selector, State, Sub};
use crate::{ApiError, Stats};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Longest watch; a real server picks 30 to 60 minutes when the client sets no timeout.
const WATCH_CAP: u64 = 1800;

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) stats: Mutex<Stats>,
    pub(crate) log: bool,
    /// Added before every answer (Builder::latency).
    pub(crate) latency: Duration,
    pub(crate) addr: SocketAddr,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Accepts connections until shutdown; each connection ends at shutdown too.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors, most likely: let some connections finish.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut shutdown = shared.shutdown.clone();
            let service = service_fn(move |req| handle(shared.clone(), req));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stopped(&mut shutdown) => {}
            }
        });
    }
}

/// Resolves once shutdown is signalled (or the server handle is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it before anything else awaits.
    let _ = shutdown.wait_for(|down| *down).await.is_ok();
}

/// A request with its body read and its query decoded.
struct Call {
    method: Method,
    query: HashMap<String, String>,
    content_type: String,
    body: Bytes,
}

impl Call {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "1"))
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    fn json(&self) -> Result<Value, ApiError> {
        // Typed client-go clientsets (kubectl's imperative `create namespace` and the like)
        // send protobuf; decoding it would need every type's schema.
        if self.content_type.contains("protobuf") || self.content_type.contains("cbor") {
            let message = format!(
                "only JSON request bodies are supported, not {}; use `kubectl create -f`",
                self.content_type
            );
            return Err(ApiError::new(415, "UnsupportedMediaType", message));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let query = form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let content_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let call = Call {
        method: parts.method,
        query,
        content_type,
        body,
    };
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let (verb, resource, response) = route(&shared, parts.uri.path(), &call);
    if !verb.is_empty() {
        shared.stats().record(verb, &resource);
    }
    if shared.log {
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        eprintln!(
            "fake-apiserver: {} {} -> {} ({elapsed:.1} ms)",
            call.method,
            parts.uri,
            response.status().as_u16()
        );
    }
    Ok(response)
}

fn respond(code: StatusCode, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("JSON values serialize");
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = code;
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("valid header"),
    );
    response
}

fn failure(error: &ApiError) -> Response<Body> {
    respond(
        StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &error.status(),
    )
}

/// Dispatches on the path; returns the verb and resource to count (an empty verb counts
/// nothing) and the response.
fn route(shared: &Arc<Shared>, path: &str, call: &Call) -> (&'static str, String, Response<Body>) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let discovery = |doc: Option<Value>| {
        let response = doc.map_or_else(
            || failure(&ApiError::no_route()),
            |doc| respond(StatusCode::OK, &doc),
        );
        ("get", "discovery".to_string(), response)
    };
    match segments.as_slice() {
        ["version"] => discovery(Some(resources::version_info())),
        ["api"] => discovery(Some(resources::api_versions(&shared.addr.to_string()))),
        ["apis"] => discovery(Some(resources::group_list(&shared.state().resources))),
        ["api", "v1"] => discovery(resources::resource_list(
            &shared.state().resources,
            "",
            "v1",
        )),
        ["apis", group] => discovery(resources::api_group(&shared.state().resources, group)),
        ["apis", group, version] => discovery(resources::resource_list(
            &shared.state().resources,
            group,
            version,
        )),
        ["healthz" | "livez" | "readyz"] => (
            "get",
            "health".into(),
            Response::new(Full::from("ok").boxed_unsync()),
        ),
        ["fake", "stats"] => (
            "",
            String::new(),
            respond(StatusCode::OK, &json!(*shared.stats())),
        ),
        ["api", "v1", rest @ ..] => resource_call(shared, call, ("", "v1"), rest),
        ["apis", group, version, rest @ ..] => resource_call(shared, call, (group, version), rest),
        _ => ("other", "unknown".into(), failure(&ApiError::no_route())),
    }
}

/// Everything under a group/version: `[namespaces/<ns>/]<plural>[/<name>[/status]]`.
fn resource_call(
    shared: &Arc<Shared>,
    call: &Call,
    (group, version): (&str, &str),
    rest: &[&str],
) -> (&'static str, String, Response<Body>) {
    let state = shared.state();
    let in_namespace = rest.len() >= 3
        && rest[0] == "namespaces"
        && state
            .lookup(group, version, rest[2])
            .is_some_and(|r| r.namespaced);
    let (namespace, rest) = if in_namespace {
        (Some(rest[1]), &rest[2..])
    } else {
        (None, rest)
    };
    let Some(res) = state.lookup(group, version, rest[0]) else {
        return ("other", "unknown".into(), failure(&ApiError::no_route()));
    };
    drop(state);
    let (name, sub) = (rest.get(1).copied(), rest.get(2).copied());
    let verb = match (&call.method, name) {
        (&Method::GET, None) if call.flag("watch") => "watch",
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, None) => "create",
        (&Method::PUT, Some(_)) => "update",
        (&Method::PATCH, Some(_)) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        (&Method::DELETE, None) => "deletecollection",
        _ => {
            let error = ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            );
            return ("other", res.qualified(), failure(&error));
        }
    };
    shared.stats().accesses.insert(crate::Access {
        verb: verb.into(),
        group: res.group.clone(),
        resource: match sub {
            Some(sub) => format!("{}/{sub}", res.plural),
            None => res.plural.clone(),
        },
        namespace: namespace.map(String::from),
        apply: call.content_type == "application/apply-patch+yaml",
    });
    let bad_sub = sub.is_some_and(|s| s != "status" || !res.status);
    let needs_namespace =
        res.namespaced && namespace.is_none() && !matches!(verb, "list" | "watch");
    let response = if rest.len() > 3 || bad_sub || needs_namespace {
        Err(ApiError::no_route())
    } else {
        let sub = if sub.is_some() {
            Sub::Status
        } else {
            Sub::Main
        };
        let (namespace, name) = (namespace.unwrap_or_default(), name.unwrap_or_default());
        execute(
            shared,
            call,
            verb,
            At {
                res: &res,
                namespace,
                name,
            },
            sub,
        )
    };
    (
        verb,
        res.qualified(),
        response.unwrap_or_else(|e| failure(&e)),
    )
}

fn execute(
    shared: &Arc<Shared>,
    call: &Call,
    verb: &str,
    at: At<'_>,
    sub: Sub,
) -> Result<Response<Body>, ApiError> {
    let At { res, namespace, .. } = at;
    let filter = || -> Result<Filter, ApiError> {
        let selector = Selector::parse(
            call.param("labelSelector").unwrap_or_default(),
            call.param("fieldSelector").unwrap_or_default(),
        );
        let namespace = (!namespace.is_empty()).then(|| namespace.to_string());
        Ok(Filter {
            namespace,
            selector: selector.map_err(ApiError::bad_request)?,
        })
    };
    let dry = call.dry_run();
    let ok = |obj: Value| Ok(respond(StatusCode::OK, &obj));
    let mut state = shared.state();
    match verb {
        "list" => ok(state.list(res, &filter()?)),
        "watch" => {
            drop(state);
            watch(shared, res, filter()?, call)
        }
        "get" => ok(state.get(at)?),
        "create" => {
            let created = state.create(res, namespace, call.json()?, dry)?;
            Ok(respond(StatusCode::CREATED, &created))
        }
        "update" => ok(state.replace(at, call.json()?, sub, dry)?),
        "patch" => {
            let patch = match call.content_type.as_str() {
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    (PatchKind::Merge, call.json()?)
                }
                "application/json-patch+json" => (PatchKind::Json, call.json()?),
                "application/apply-patch+yaml" => {
                    if call.param("fieldManager").is_none_or(str::is_empty) {
                        return Err(ApiError::bad_request(
                            "fieldManager is required for apply patch",
                        ));
                    }
                    let body = call.json().or_else(|_| {
                        let text = String::from_utf8_lossy(&call.body);
                        serde_saphyr::from_str(&text)
                            .map_err(|e| ApiError::bad_request(format!("invalid YAML body: {e}")))
                    })?;
                    (PatchKind::Apply, body)
                }
                other => {
                    let message = format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
                    );
                    return Err(ApiError::new(415, "UnsupportedMediaType", message));
                }
            };
            let (obj, created) = state.patch(at, patch, sub, dry)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(respond(code, &obj))
        }
        "delete" => {
            let options = if call.body.is_empty() {
                json!({})
            } else {
                call.json()?
            };
            // 200 with the object whether it is gone or only marked for deletion, as a real
            // server answers unless `orphanDependents: false` was asked for.
            ok(state.delete(at, &options, dry)?.0)
        }
        _ => {
            let targets: Vec<Value> = state.matching(res, &filter()?).cloned().collect();
            let mut items = Vec::new();
            for obj in &targets {
                let field = |f: &str| obj["metadata"][f].as_str().unwrap_or_default();
                let at = At {
                    res,
                    namespace: field("namespace"),
                    name: field("name"),
                };
                items.push(state.delete(at, &json!({}), dry)?.0);
            }
            let mut list = state.list(
                res,
                &Filter {
                    namespace: None,
                    selector: Selector::default(),
                },
            );
            list["items"] = items.into();
            ok(list)
        }
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object}))
        .expect("JSON values serialize");
    line.push(b'\n');
    Bytes::from(line)
}

/// One open watch: events already rendered, then whatever the log gains.
struct Watch {
    shared: Arc<Shared>,
    res: Resource,
    filter: Filter,
    since: u64,
    pending: VecDeque<Bytes>,
    done: bool,
    changes: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    deadline: tokio::time::Instant,
}

impl Watch {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            if self.done {
                return None;
            }
            self.changes.borrow_and_update();
            {
                let state = self.shared.state();
                match state.events_since(self.since, &self.res, &self.filter) {
                    Some(events) => self
                        .pending
                        .extend(events.iter().map(|(kind, obj)| event_line(kind, obj))),
                    None => {
                        let expired = ApiError::new(
                            410,
                            "Expired",
                            format!("too old resource version: {}", self.since),
                        );
                        self.pending
                            .push_back(event_line("ERROR", &expired.status()));
                        self.done = true;
                    }
                }
                self.since = state.resource_version();
            }
            if !self.pending.is_empty() {
                continue;
            }
            tokio::select! {
                changed = self.changes.changed() => if changed.is_err() { return None },
                _ = tokio::time::sleep_until(self.deadline) => return None,
                _ = stopped(&mut self.shutdown) => return None,
            }
        }
    }
}

/// Starts a watch: from the given resourceVersion, or (absent, "0", or with
/// `sendInitialEvents`) with an ADDED event per current object first.
fn watch(
    shared: &Arc<Shared>,
    res: &Resource,
    filter: Filter,
    call: &Call,
) -> Result<Response<Body>, ApiError> {
    let timeout = call
        .param("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(WATCH_CAP)
        .min(WATCH_CAP);
    let from = call
        .param("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0");
    let initial = from.is_none() || call.flag("sendInitialEvents");
    let state = shared.state();
    let mut pending = VecDeque::new();
    let since = if initial {
        pending.extend(
            state
                .matching(res, &filter)
                .map(|obj| event_line("ADDED", &res.view(obj))),
        );
        state.resource_version()
    } else {
        let from = from.unwrap_or_default();
        from.parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version {from:?}")))?
    };
    if call.flag("sendInitialEvents") {
        let bookmark = json!({
            "apiVersion": res.api_version(), "kind": res.kind,
            "metadata": {"resourceVersion": since.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}},
        });
        pending.push_back(event_line("BOOKMARK", &bookmark));
    }
    let watch = Watch {
        shared: shared.clone(),
        res: res.clone(),
        filter,
        since,
        pending,
        done: false,
        changes: state.subscribe(),
        shutdown: shared.shutdown.clone(),
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
    };
    drop(state);
    let stream = futures::stream::unfold(watch, |mut watch| async move {
        let line = watch.next().await?;
        Some((Ok::<_, Infallible>(Frame::data(line)), watch))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("valid header"),
    );
    Ok(response)
}
