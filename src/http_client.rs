//! A small HTTP/1.1 client that behaves like Python `requests` where `chaos` users can see it.
//!
//! The http provider's output (`{"status", "headers", "body"}`) exposes details that general
//! purpose Rust clients normalise away: `requests` keeps the server's header-name casing and
//! order, merges repeated headers with `", "`, decodes text bodies with the charset rules of
//! `requests` (ISO-8859-1 for `text/*` without a charset), applies its read timeout between
//! bytes rather than to the whole response, follows up to 30 redirects with its method rewrite
//! rules, honours `HTTP(S)_PROXY`/`NO_PROXY` and `REQUESTS_CA_BUNDLE`. This module reproduces
//! exactly that on tokio, rustls (ring) and `httparse`, with one connection per request (as a
//! fresh `requests.Session` per activity does). It serves the http provider and the loader of
//! experiments given as URLs.

use std::io;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

/// Most redirects followed before giving up, as `requests` (`Session.max_redirects`).
const MAX_REDIRECTS: usize = 30;
/// Most response header lines accepted, as Python's `http.client`.
const MAX_HEADERS: usize = 100;
/// Largest response head accepted.
const MAX_HEAD_BYTES: usize = 256 * 1024;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// Upper-case method (`GET`, `POST`...).
    pub method: String,
    /// Absolute `http` or `https` URL.
    pub url: Url,
    /// Headers in the order given; they override the client's defaults case-insensitively.
    pub headers: Vec<(String, String)>,
    /// Request body, sent with a `Content-Length`.
    pub body: Option<Vec<u8>>,
}

/// How to send it.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Time allowed to establish the TCP connection (and TLS handshake); `None` waits forever.
    pub connect_timeout: Option<Duration>,
    /// Time allowed between two reads of the response; `None` waits forever.
    pub read_timeout: Option<Duration>,
    /// Verify the server certificate (`verify_tls`, `--no-verify-tls`).
    pub verify_tls: bool,
    /// Retries of failed connections (never of sent requests), as `requests`' `max_retries`.
    pub max_retries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: None,
            read_timeout: None,
            verify_tls: true,
            max_retries: 0,
        }
    }
}

/// A received response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers with the server's casing, first-seen order, repeated names joined by `", "`.
    pub headers: Vec<(String, String)>,
    /// Raw body bytes (chunked transfer decoded).
    pub body: Vec<u8>,
    /// The URL that answered, after redirects.
    pub url: Url,
}

impl Response {
    /// A header's value, looked up case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, decoded as `requests`' `Response.text` does.
    pub fn text(&self) -> String {
        decode_text(&self.body, self.header("content-type"))
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection could not be established or broke before a full response arrived
    /// (`requests.ConnectionError`).
    #[error("{0}")]
    Connect(String),
    /// The server did not send a byte within the read timeout (`requests.ReadTimeout`).
    #[error("read timed out")]
    ReadTimeout,
    /// More than 30 redirects (`requests.TooManyRedirects`).
    #[error("exceeded {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    /// The request itself is unusable (bad URL, scheme, header).
    #[error("{0}")]
    Invalid(String),
}

/// Sends a request, following redirects as `requests` does.
///
/// # Errors
///
/// See [`Error`]; HTTP error statuses are responses, not errors.
pub async fn send(mut request: Request, options: Options) -> Result<Response, Error> {
    for _ in 0..=MAX_REDIRECTS {
        let response = send_once(&request, options).await?;
        let Some(next) = redirect(&request, &response)? else {
            return Ok(response);
        };
        request = next;
    }
    Err(Error::TooManyRedirects)
}

/// The request to send after `response`, when it is a redirect.
fn redirect(request: &Request, response: &Response) -> Result<Option<Request>, Error> {
    if !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
        return Ok(None);
    }
    let Some(location) = response.header("location") else {
        return Ok(None);
    };
    let url = request
        .url
        .join(location)
        .map_err(|e| Error::Invalid(format!("invalid redirect location {location:?}: {e}")))?;
    let mut next = request.clone();
    // requests' rebuild_method: 303 and 302 turn into GET (but HEAD), 301 turns POST into GET.
    let to_get = match response.status {
        303 | 302 => next.method != "HEAD",
        301 => next.method == "POST",
        _ => false,
    };
    if to_get {
        next.method = "GET".into();
        next.body = None;
        next.headers.retain(|(n, _)| {
            !n.eq_ignore_ascii_case("content-type") && !n.eq_ignore_ascii_case("content-length")
        });
    }
    // requests drops credentials when the redirect leaves the host.
    if url.host_str() != request.url.host_str() {
        next.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
    }
    next.url = url;
    Ok(Some(next))
}

async fn send_once(request: &Request, options: Options) -> Result<Response, Error> {
    let url = &request.url;
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(Error::Invalid(format!("unsupported URL scheme '{other}'"))),
    };
    let host = url
        .host_str()
        .ok_or_else(|| Error::Invalid(format!("no host in URL {url}")))?
        .to_owned();
    let port = url
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });
    let proxy = proxy_for(url);

    let mut attempt = 0;
    let mut stream = loop {
        match connect(&host, port, https, proxy.as_ref(), options).await {
            Ok(stream) => break stream,
            Err(e) if attempt < options.max_retries => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "Connection failed; retrying.");
            }
            Err(e) => return Err(e),
        }
    };

    // Through a plain-http proxy the request line carries the absolute URL.
    let target = if proxy.is_some() && !https {
        url.as_str().to_owned()
    } else {
        let mut t = url.path().to_owned();
        if let Some(q) = url.query() {
            t.push('?');
            t.push_str(q);
        }
        t
    };
    let head = request_head(request, &target, &host, port, https, proxy.as_ref())?;
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        if let Some(body) = &request.body {
            stream.write_all(body).await?;
        }
        stream.flush().await
    };
    write
        .await
        .map_err(|e| Error::Connect(format!("failed to send the request: {e}")))?;

    let mut reader = Reader::new(stream, options.read_timeout);
    read_response(&mut reader, &request.method, url.clone()).await
}

fn request_head(
    request: &Request,
    target: &str,
    host: &str,
    port: u16,
    https: bool,
    proxy: Option<&Proxy>,
) -> Result<String, Error> {
    let default_port = if https { 443 } else { 80 };
    let host_header = if port == default_port {
        bracket_ipv6(host)
    } else {
        format!("{}:{port}", bracket_ipv6(host))
    };
    let mut headers: Vec<(String, String)> = vec![
        ("Host".into(), host_header),
        (
            "User-Agent".into(),
            concat!("chaosflow/", env!("CARGO_PKG_VERSION")).into(),
        ),
        ("Accept-Encoding".into(), "identity".into()),
        ("Accept".into(), "*/*".into()),
        ("Connection".into(), "close".into()),
    ];
    for (name, value) in &request.headers {
        if name.is_empty() || name.contains([':', '\r', '\n']) || value.contains(['\r', '\n']) {
            return Err(Error::Invalid(format!("invalid header {name:?}")));
        }
        if let Some(slot) = headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            *slot = (name.clone(), value.clone());
        } else {
            headers.push((name.clone(), value.clone()));
        }
    }
    let has = |h: &[(String, String)], n: &str| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    match &request.body {
        Some(body) if !has(&headers, "content-length") => {
            headers.push(("Content-Length".into(), body.len().to_string()));
        }
        // requests announces an empty body on every method but GET and HEAD.
        None if !matches!(request.method.as_str(), "GET" | "HEAD")
            && !has(&headers, "content-length") =>
        {
            headers.push(("Content-Length".into(), "0".into()));
        }
        _ => {}
    }
    if let (Some(auth), false) = (proxy.and_then(|p| p.authorization.as_ref()), https) {
        headers.push(("Proxy-Authorization".into(), auth.clone()));
    }
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, target);
    for (name, value) in headers {
        head.push_str(&name);
        head.push_str(": ");
        head.push_str(&value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    Ok(head)
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Connections

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(
    host: &str,
    port: u16,
    https: bool,
    proxy: Option<&Proxy>,
    options: Options,
) -> Result<Box<dyn Stream>, Error> {
    let (tcp_host, tcp_port) = match proxy {
        Some(p) => (p.host.as_str(), p.port),
        None => (host, port),
    };
    let establish = async {
        let tcp = TcpStream::connect((tcp_host, tcp_port))
            .await
            .map_err(|e| Error::Connect(describe_io(&e)))?;
        let _ = tcp.set_nodelay(true);
        let mut stream: Box<dyn Stream> = Box::new(tcp);
        if https {
            if let Some(p) = proxy {
                stream = tunnel(stream, host, port, p).await?;
            }
            stream = tls(stream, host, options.verify_tls).await?;
        }
        Ok(stream)
    };
    match options.connect_timeout {
        Some(limit) => tokio::time::timeout(limit, establish)
            .await
            .map_err(|_| Error::Connect(format!("connection to {host}:{port} timed out")))?,
        None => establish.await,
    }
}

fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

/// Opens a CONNECT tunnel through an HTTP proxy.
async fn tunnel(
    mut stream: Box<dyn Stream>,
    host: &str,
    port: u16,
    proxy: &Proxy,
) -> Result<Box<dyn Stream>, Error> {
    let authority = format!("{}:{port}", bracket_ipv6(host));
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(auth) = &proxy.authorization {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| Error::Connect(format!("proxy: {e}")))?;
    let mut reader = Reader::new(stream, None);
    let (status, _) = reader.read_head().await?;
    if status != 200 {
        return Err(Error::Connect(format!(
            "proxy refused the tunnel with status {status}"
        )));
    }
    Ok(reader.into_inner())
}

async fn tls(stream: Box<dyn Stream>, host: &str, verify: bool) -> Result<Box<dyn Stream>, Error> {
    let config = chaosflow_sinks::tls::client_config(verify);
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| Error::Invalid(format!("invalid TLS server name {host:?}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| Error::Connect(format!("TLS handshake failed: {e}")))?;
    Ok(Box::new(tls))
}

// ---------------------------------------------------------------------------------------------
// Proxies

#[derive(Debug, Clone)]
struct Proxy {
    host: String,
    port: u16,
    authorization: Option<String>,
}

fn env_var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
}

/// The proxy `requests` would use for `url`, from the environment.
fn proxy_for(url: &Url) -> Option<Proxy> {
    let host = url.host_str()?;
    if let Some(no_proxy) = env_var(&["no_proxy", "NO_PROXY"])
        && bypass(&no_proxy, host, url.port_or_known_default())
    {
        return None;
    }
    let raw = match url.scheme() {
        "https" => env_var(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]),
        _ => env_var(&["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]),
    }?;
    let with_scheme = if raw.contains("://") {
        raw
    } else {
        format!("http://{raw}")
    };
    let proxy = Url::parse(&with_scheme).ok()?;
    let authorization = (!proxy.username().is_empty()).then(|| {
        let user = percent_decode(proxy.username());
        let pass = percent_decode(proxy.password().unwrap_or(""));
        format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))
    });
    Some(Proxy {
        host: proxy.host_str()?.trim_matches(['[', ']']).to_owned(),
        port: proxy.port_or_known_default().unwrap_or(80),
        authorization,
    })
}

fn bypass(no_proxy: &str, host: &str, port: Option<u16>) -> bool {
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = match entry.rsplit_once(':') {
                Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => (n, p.parse().ok()),
                _ => (entry, None),
            };
            if entry_port.is_some() && entry_port != port {
                return false;
            }
            let name = name.trim_start_matches('.');
            host == name || host.ends_with(&format!(".{name}"))
        })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 with padding (for proxy credentials).
pub(crate) fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Responses

/// Buffered reads with the per-read timeout `requests` applies.
struct Reader {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    timeout: Option<Duration>,
}

impl Reader {
    fn new(stream: Box<dyn Stream>, timeout: Option<Duration>) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            timeout,
        }
    }

    fn into_inner(self) -> Box<dyn Stream> {
        self.stream
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> Result<usize, Error> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self.stream.read(&mut chunk);
        let n = match self.timeout {
            Some(limit) => tokio::time::timeout(limit, read)
                .await
                .map_err(|_| Error::ReadTimeout)?,
            None => read.await,
        }
        .map_err(|e| Error::Connect(format!("connection broken: {e}")))?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response head: status and headers as sent.
    async fn read_head(&mut self) -> Result<(u16, Vec<(String, String)>), Error> {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut slots);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.unwrap_or(0);
                    // Python's http.client decodes header bytes as ISO-8859-1.
                    let headers = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                h.value.iter().map(|&b| b as char).collect(),
                            )
                        })
                        .collect();
                    self.buf.drain(..len);
                    return Ok((status, headers));
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > MAX_HEAD_BYTES {
                        return Err(Error::Connect("response head too large".into()));
                    }
                    if self.fill().await? == 0 {
                        return Err(Error::Connect(
                            "remote end closed connection without response".into(),
                        ));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(Error::Connect(format!(
                        "got more than {MAX_HEADERS} headers"
                    )));
                }
                Err(e) => return Err(Error::Connect(format!("invalid response: {e}"))),
            }
        }
    }

    async fn read_exact_body(&mut self, len: usize) -> Result<Vec<u8>, Error> {
        while self.buf.len() < len {
            if self.fill().await? == 0 {
                return Err(Error::Connect(format!(
                    "connection closed after {} of {len} body bytes",
                    self.buf.len()
                )));
            }
        }
        Ok(self.buf.drain(..len).collect())
    }

    async fn read_line(&mut self) -> Result<String, Error> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            if self.fill().await? == 0 {
                return Err(Error::Connect(
                    "connection closed inside a chunked body".into(),
                ));
            }
        }
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>, Error> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| Error::Connect(format!("invalid chunk size {size:?}")))?;
            if size == 0 {
                // Skip trailers up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact_body(size).await?);
            self.read_line().await?;
        }
    }

    async fn read_to_end(&mut self) -> Result<Vec<u8>, Error> {
        while self.fill().await? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }
}

async fn read_response(reader: &mut Reader, method: &str, url: Url) -> Result<Response, Error> {
    let (status, raw_headers) = loop {
        let (status, headers) = reader.read_head().await?;
        // Interim 1xx responses (100 Continue...) precede the real one, except 101.
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        break (status, headers);
    };
    let headers = merge_headers(raw_headers);
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let no_body =
        method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let body = if no_body {
        Vec::new()
    } else if find("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        reader.read_chunked().await?
    } else if let Some(len) = find("content-length") {
        let len: usize = len
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|_| Error::Connect(format!("invalid Content-Length {len:?}")))?;
        reader.read_exact_body(len).await?
    } else {
        reader.read_to_end().await?
    };
    Ok(Response {
        status,
        headers,
        body,
        url,
    })
}

/// Merges repeated header names as urllib3 does: first casing and position, values joined.
fn merge_headers(raw: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut merged: Vec<(String, String)> = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        if let Some((_, existing)) = merged
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            existing.push_str(", ");
            existing.push_str(&value);
        } else {
            merged.push((name, value));
        }
    }
    merged
}

/// The charset `requests` picks from a Content-Type (`get_encoding_from_headers`).
fn charset(content_type: Option<&str>) -> Option<String> {
    let ct = content_type?;
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    for param in parts {
        if let Some((k, v)) = param.split_once('=')
            && k.trim().eq_ignore_ascii_case("charset")
        {
            return Some(v.trim().trim_matches(['"', '\'']).to_ascii_lowercase());
        }
    }
    if mime.contains("text") {
        return Some("iso-8859-1".into());
    }
    if mime.contains("application/json") {
        return Some("utf-8".into());
    }
    None
}

/// Decodes a body as `requests`' `Response.text` (invalid bytes replaced).
pub fn decode_text(body: &[u8], content_type: Option<&str>) -> String {
    match charset(content_type).as_deref() {
        Some("iso-8859-1" | "latin-1" | "latin1" | "l1" | "iso8859-1") => latin1(body),
        Some("ascii" | "us-ascii") => body
            .iter()
            .map(|&b| if b < 0x80 { b as char } else { '\u{fffd}' })
            .collect(),
        Some(_) => String::from_utf8_lossy(body).into_owned(),
        // No declared charset: requests guesses; UTF-8 or, failing that, a single-byte text.
        None => match std::str::from_utf8(body) {
            Ok(s) => s.to_owned(),
            Err(_) => latin1(body),
        },
    }
}

fn latin1(body: &[u8]) -> String {
    body.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charset_rules_follow_requests() {
        assert_eq!(decode_text(b"caf\xe9", Some("text/plain")), "café");
        assert_eq!(
            decode_text("café".as_bytes(), Some("text/plain; charset=utf-8")),
            "café"
        );
        assert_eq!(
            decode_text("café".as_bytes(), Some("application/json")),
            "café"
        );
        assert_eq!(decode_text("café".as_bytes(), None), "café");
        assert_eq!(decode_text(b"caf\xe9", None), "café");
    }

    #[test]
    fn repeated_headers_are_merged() {
        let merged = merge_headers(vec![
            ("Set-Cookie".into(), "a=1".into()),
            ("X-A".into(), "x".into()),
            ("set-cookie".into(), "b=2".into()),
        ]);
        assert_eq!(
            merged,
            vec![
                ("Set-Cookie".into(), "a=1, b=2".into()),
                ("X-A".into(), "x".into())
            ]
        );
    }

    #[test]
    fn no_proxy_matching() {
        assert!(bypass("localhost,.internal", "api.internal", Some(80)));
        assert!(bypass("example.com", "example.com", Some(443)));
        assert!(!bypass("example.com", "notexample.com", Some(443)));
        assert!(bypass("*", "anything", None));
        assert!(!bypass("host:8080", "host", Some(80)));
    }

    #[test]
    fn base64_encodes() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
    }

    #[test]
    fn redirects_rewrite_like_requests() {
        let req = Request {
            method: "POST".into(),
            url: Url::parse("http://a.example/x").unwrap(),
            headers: vec![
                ("Authorization".into(), "Bearer t".into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: Some(b"{}".to_vec()),
        };
        let resp = |status, location: &str| Response {
            status,
            headers: vec![("Location".into(), location.into())],
            body: Vec::new(),
            url: req.url.clone(),
        };
        let next = redirect(&req, &resp(302, "/y")).unwrap().unwrap();
        assert_eq!(next.method, "GET");
        assert!(next.body.is_none());
        assert_eq!(next.url.as_str(), "http://a.example/y");
        assert_eq!(next.headers.len(), 1);
        let next = redirect(&req, &resp(307, "http://b.example/z"))
            .unwrap()
            .unwrap();
        assert_eq!(next.method, "POST");
        assert!(next.body.is_some());
        assert!(next.headers.iter().all(|(n, _)| n != "Authorization"));
        assert!(redirect(&req, &resp(200, "/y")).unwrap().is_none());
    }
}
