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
//! - `/private/<file>`: the same, only with `Authorization: bearer s3cret-t0ken`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

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
        401 => "Unauthorized",
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
