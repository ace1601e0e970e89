//! A small HTTP/1.1 server on 127.0.0.1 that http probes of both `chaos` and `chaosflow` call.
//!
//! Responses are fully scripted (no `Date` or `Server` header) so the two tools' journals can
//! be compared byte for byte. Endpoints:
//!
//! - `/json`, `/json-charset`: a JSON document, served as `application/json` (parsed by both
//!   tools) and `application/json; charset=utf-8` (kept as text by both);
//! - `/text`, `/latin1`: text bodies; `/status/<code>`: that status; `/slow/<secs>`: a late answer;
//! - `/echo`: the request's method, path, query, content type and body, as JSON, and whether
//!   it came through a proxy (absolute-form target: the server doubles as an HTTP proxy);
//! - `/invalid-json`, `/empty-json`: `application/json` that is not JSON;
//! - `/redirect`: 302 to `/json`; `/dup`: a repeated header; `/case`: odd header casing;
//! - `/served/<file>`: experiments from `tests/conformance/served/`, by extension;
//! - `/private/<file>`: the same, only with `Authorization: bearer s3cret-t0ken`;
//! - `/capture/<key>/...`: records every request under `key` ([`captured`]) and answers what
//!   [`script`] queued for `key` (200 once the script is exhausted).
//!
//! [`blackhole_url`] is another listener: it accepts connections and never answers.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// `http://127.0.0.1:<port>` of the shared server, started on first use.
pub fn base_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = serve(stream);
                });
            }
        });
        format!("http://127.0.0.1:{port}")
    })
    .clone()
}

/// A recorded request.
#[derive(Debug, Clone)]
pub struct Captured {
    /// When it arrived.
    pub at: Instant,
    /// `GET`, `POST`...
    pub method: String,
    /// Path after `/capture/<key>`.
    pub path: String,
    /// Headers as sent (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl Captured {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }
}

type Response = (u16, Vec<(String, String)>, String);

fn captures() -> &'static Mutex<HashMap<String, Vec<Captured>>> {
    static C: OnceLock<Mutex<HashMap<String, Vec<Captured>>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

fn scripts() -> &'static Mutex<HashMap<String, VecDeque<Response>>> {
    static S: OnceLock<Mutex<HashMap<String, VecDeque<Response>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// The URL capturing requests under `key` (unique per test).
pub fn capture_url(key: &str) -> String {
    format!("{}/capture/{key}", base_url())
}

/// A scripted answer: status, headers, body.
pub type Scripted<'a> = (u16, Vec<(&'a str, &'a str)>, &'a str);

/// Queues the answers to the next requests under `key`.
pub fn script(key: &str, responses: Vec<Scripted<'_>>) {
    let responses = responses
        .into_iter()
        .map(|(s, h, b)| {
            (
                s,
                h.into_iter()
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect(),
                b.to_owned(),
            )
        })
        .collect();
    scripts().lock().unwrap().insert(key.to_owned(), responses);
}

/// The requests recorded under `key`, in arrival order.
pub fn captured(key: &str) -> Vec<Captured> {
    captures()
        .lock()
        .unwrap()
        .get(key)
        .cloned()
        .unwrap_or_default()
}

/// What a capture answers when nothing is scripted: Slack's Web API shape for `api/chat.*`
/// (a new message `ts` each time), `ok` otherwise (as Slack's incoming webhooks answer).
fn default_answer(sub: &str) -> Response {
    static TS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    if sub.starts_with("api/chat.") {
        let n = TS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ts = format!("1700000000.{n:06}");
        let body = serde_json::json!({
            "ok": true, "channel": "C0CHAOS", "ts": ts,
            "message": {"ts": ts, "text": "", "type": "message"}
        });
        return (
            200,
            vec![("Content-Type".into(), "application/json".into())],
            body.to_string(),
        );
    }
    (
        200,
        vec![("Content-Type".into(), "text/html".into())],
        "ok".into(),
    )
}

/// A URL whose server accepts connections and never answers.
pub fn blackhole_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        });
        format!("http://127.0.0.1:{port}/void")
    })
    .clone()
}

struct Request {
    proxied: bool,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &TcpStream) -> std::io::Result<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let mut target = parts.next().unwrap_or("/").to_owned();
    // Through a proxy the target is absolute: serve its path, as the origin would.
    let proxied = target.starts_with("http://");
    if proxied {
        let rest = &target["http://".len()..];
        target = rest
            .find('/')
            .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned());
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target, String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Request {
        proxied,
        method,
        path,
        query,
        headers,
        body,
    })
}

fn respond(
    mut stream: &TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

const JSON_DOC: &str = r#"{"services": [{"name": "a", "latency": 3, "ok": true}, {"name": "b", "latency": 9, "ok": false}], "count": 2, "message": "hello", "ratio": 0.5}"#;

fn serve(stream: TcpStream) -> std::io::Result<()> {
    let req = read_request(&stream)?;
    let path = req.path.clone();
    if let Some(rest) = path.strip_prefix("/capture/") {
        let (key, sub) = rest.split_once('/').map_or((rest, ""), |(k, s)| (k, s));
        captures()
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .push(Captured {
                at: Instant::now(),
                method: req.method.clone(),
                path: format!("/{sub}"),
                headers: req
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                    .collect(),
                body: String::from_utf8_lossy(&req.body).into_owned(),
            });
        let next = scripts()
            .lock()
            .unwrap()
            .get_mut(key)
            .and_then(VecDeque::pop_front);
        let (status, headers, body) = next.unwrap_or_else(|| default_answer(sub));
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        return respond(&stream, status, &headers, body.as_bytes());
    }
    match path.as_str() {
        "/json" => respond(
            &stream,
            200,
            &[
                ("Content-Type", "application/json"),
                ("X-Custom-Header", "Yes"),
            ],
            JSON_DOC.as_bytes(),
        ),
        "/json-charset" => respond(
            &stream,
            200,
            &[("Content-Type", "application/json; charset=utf-8")],
            JSON_DOC.as_bytes(),
        ),
        "/text" => respond(
            &stream,
            200,
            &[("Content-Type", "text/plain")],
            b"all good\n",
        ),
        "/latin1" => respond(
            &stream,
            200,
            &[("Content-Type", "text/plain")],
            b"caf\xe9\n",
        ),
        "/invalid-json" => respond(
            &stream,
            200,
            &[("Content-Type", "application/json")],
            b"{not json",
        ),
        "/empty-json" => respond(&stream, 200, &[("Content-Type", "application/json")], b""),
        "/redirect" => respond(&stream, 302, &[("Location", "/json")], b""),
        "/dup" => respond(
            &stream,
            200,
            &[
                ("X-Dup", "a"),
                ("Content-Type", "text/plain"),
                ("x-dup", "b"),
            ],
            b"dup",
        ),
        "/case" => respond(
            &stream,
            200,
            &[
                ("content-type", "text/plain"),
                ("X-lower-UPPER", "v"),
                ("ETAG", "\"1\""),
            ],
            b"case",
        ),
        "/echo" => {
            let echo = serde_json::json!({
                "proxied": req.proxied,
                "method": req.method,
                "path": req.path,
                "query": req.query,
                "content_type": req.header("content-type"),
                "custom": req.header("x-test"),
                "body": String::from_utf8_lossy(&req.body),
            });
            respond(
                &stream,
                200,
                &[("Content-Type", "application/json")],
                echo.to_string().as_bytes(),
            )
        }
        p if p.starts_with("/status/") => {
            let code: u16 = p["/status/".len()..].parse().unwrap_or(500);
            let body = format!("status {code}");
            respond(
                &stream,
                code,
                &[("Content-Type", "text/plain")],
                body.as_bytes(),
            )
        }
        p if p.starts_with("/slow/") => {
            let secs: f64 = p["/slow/".len()..].parse().unwrap_or(1.0);
            std::thread::sleep(Duration::from_secs_f64(secs));
            respond(&stream, 200, &[("Content-Type", "text/plain")], b"slow")
        }
        p if p.starts_with("/served/") || p.starts_with("/private/") => {
            if p.starts_with("/private/")
                && req.header("authorization") != Some("bearer s3cret-t0ken")
            {
                return respond(
                    &stream,
                    401,
                    &[("Content-Type", "text/plain")],
                    b"who are you?",
                );
            }
            let name = p.rsplit('/').next().unwrap_or("");
            let file = super::cases().join("served").join(name);
            match std::fs::read(&file) {
                Ok(body) => {
                    let ct = if name.ends_with(".json") {
                        "application/json"
                    } else if name.ends_with(".txt") {
                        "text/plain"
                    } else {
                        "application/x-yaml"
                    };
                    respond(&stream, 200, &[("Content-Type", ct)], &body)
                }
                Err(_) => respond(
                    &stream,
                    404,
                    &[("Content-Type", "text/plain")],
                    b"no such experiment",
                ),
            }
        }
        _ => respond(
            &stream,
            404,
            &[("Content-Type", "text/plain")],
            b"not found",
        ),
    }
}
