//! HTTP on the Spice ports: a connection whose first bytes are `GET ` or `HEAD` is a browser.
//! Its request either upgrades to WebSocket (then the Spice link runs over it, see
//! [`crate::ws`]) or asks for a file of the web client (`--spice-web-root`, spice-html5's
//! directory by default), served read-only, one request per connection.
//!
//! What a client controls is bounded: the request head is at most [`MAX_HEAD_BYTES`] and
//! [`MAX_HEADERS`] lines, and must arrive whole within [`HEAD_TIMEOUT`] (a slowloris client is
//! dropped however it paces its bytes); a path that leaves the web root (`..`, an encoded
//! one, a symbolic link out of it), names a hidden file, or is not plain text is refused.
//! Every refusal is logged with the reason and answered with its status when the socket
//! still takes it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::tls::Stream;

/// Largest request head (request line and headers). A browser's upgrade request is under 1 KiB;
/// cookies of other services on the same host can add a few.
pub const MAX_HEAD_BYTES: usize = 8192;
/// Most header lines in a request.
pub const MAX_HEADERS: usize = 64;
/// The whole request head must arrive within this time, however it is paced (slowloris).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The page a request for `/` is sent to, when the web root has it: spice-html5's page that
/// connects at once, reading host, port and password from its query string.
pub const AUTO_PAGE: &str = "spice_auto.html";

/// Why a request was refused (or could not be read).
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    #[error("request head not complete within {HEAD_TIMEOUT:?}")]
    Timeout,
    #[error("request head larger than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("the client closed before its request head ended")]
    Closed,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

impl HttpError {
    /// The status line to answer with, when answering makes sense.
    pub fn status(&self) -> Option<&'static str> {
        match self {
            HttpError::Timeout => Some("408 Request Timeout"),
            HttpError::TooLarge | HttpError::TooManyHeaders => {
                Some("431 Request Header Fields Too Large")
            }
            HttpError::Malformed(_) => Some("400 Bad Request"),
            HttpError::Io(_) | HttpError::Closed => None,
        }
    }
}

/// Whether a connection's first four bytes start an HTTP request we serve.
pub fn is_request_start(first: &[u8]) -> bool {
    first == b"GET " || first == b"HEAD"
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent (origin form: a path and maybe a query).
    pub target: String,
    /// Header names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the comma-separated values of header `name` (every line of it) hold `token`,
    /// compared without case.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Parses a request head (through its blank line). Only HTTP/1.1 and later carry upgrades and
/// the Host header we need; HTTP/1.0 is accepted for plain files.
pub fn parse_request(head: &[u8]) -> Result<Request, HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(HttpError::Malformed("empty"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("request line"));
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(HttpError::Malformed("HTTP version"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed("method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(HttpError::Malformed("request target"));
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(HttpError::TooManyHeaders);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("header line"))?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(HttpError::Malformed("header name"));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(HttpError::Malformed("header value"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
    })
}

/// Reads a request head that starts with `first` (already read), up to its blank line, within
/// [`HEAD_TIMEOUT`] and [`MAX_HEAD_BYTES`]. Returns the head and whatever came after it in the
/// same reads (a WebSocket client's first frames, if it did not wait for our answer).
pub(crate) fn read_head(
    stream: &mut Stream,
    first: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), HttpError> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut buf = first.to_vec();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_blank_line(&buf) {
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(HttpError::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::Timeout);
        }
        stream.tcp().set_read_timeout(Some(left))?;
        let room = (MAX_HEAD_BYTES - buf.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Err(HttpError::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HttpError::Timeout);
            }
            Err(e) => return Err(HttpError::Io(e)),
        }
    }
}

/// The offset just past the first `\r\n\r\n`.
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Why a file request was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PathRefusal {
    #[error("a bad percent escape")]
    BadEscape,
    #[error("a NUL, backslash or control character")]
    BadCharacter,
    #[error("a '..' segment (path traversal)")]
    Traversal,
    #[error("a hidden file or directory")]
    Hidden,
    #[error("outside the web root (a symbolic link out of it)")]
    Outside,
    #[error("no such file")]
    NotFound,
}

/// The file under `root` that request path `target` names: percent-decoded, with no `..`,
/// hidden or odd segments, and once symbolic links are resolved still inside `root`. A
/// directory gives its `index.html`.
pub fn resolve(root: &Path, target: &str) -> Result<PathBuf, PathRefusal> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode(path).ok_or(PathRefusal::BadEscape)?;
    let decoded = String::from_utf8(decoded).map_err(|_| PathRefusal::BadCharacter)?;
    if decoded.chars().any(|c| c.is_control() || c == '\\') {
        return Err(PathRefusal::BadCharacter);
    }
    let mut file = root.to_path_buf();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(PathRefusal::Traversal),
            s if s.starts_with('.') => return Err(PathRefusal::Hidden),
            s => file.push(s),
        }
    }
    let root = root.canonicalize().map_err(|_| PathRefusal::NotFound)?;
    let mut real = file.canonicalize().map_err(|_| PathRefusal::NotFound)?;
    if !real.starts_with(&root) {
        return Err(PathRefusal::Outside);
    }
    if real.is_dir() {
        real = real
            .join("index.html")
            .canonicalize()
            .map_err(|_| PathRefusal::NotFound)?;
        if !real.starts_with(&root) {
            return Err(PathRefusal::Outside);
        }
    }
    if !real.is_file() {
        return Err(PathRefusal::NotFound);
    }
    Ok(real)
}

/// Decodes `%XX` escapes; `None` for a malformed one.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Some(out)
}

/// The Content-Type of a file of the web client, by its extension. Module scripts need a
/// JavaScript type (browsers refuse them otherwise).
pub fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `host[:port]` from a Host header, when it is made of the characters a host name, an IPv4 or
/// a bracketed IPv6 address can have (it goes into a Location header and a query string).
pub fn host_and_port(host: &str) -> Option<(&str, Option<&str>)> {
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    {
        return None;
    }
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let name = host.get(..addr.len() + 2)?;
        return match after.strip_prefix(':') {
            Some(port) if !port.is_empty() => Some((name, Some(port))),
            None if after.is_empty() => Some((name, None)),
            _ => None,
        };
    }
    match host.split_once(':') {
        Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some((name, Some(port)))
        }
        Some(_) => None,
        None => Some((host, None)),
    }
}

/// Writes a response with a small text body (errors, redirects).
pub(crate) fn respond(
    stream: &mut Stream,
    status: &str,
    extra_headers: &[(&str, &str)],
    body: &str,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

/// Sends `file` (already resolved) as a 200 response; the body only for GET.
pub(crate) fn send_file(stream: &mut Stream, path: &Path, with_body: bool) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {len}\r\nCache-Control: no-cache\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        content_type(path)
    );
    stream.write_all(head.as_bytes())?;
    if with_body {
        // At most the length announced, even if the file grew meanwhile.
        io::copy(&mut (&mut file).take(len), stream)?;
    }
    stream.flush()?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_are_refused() {
        let r = parse_request(
            b"GET /websockify HTTP/1.1\r\nHost: 127.0.0.1:5900\r\nUpgrade: websocket\r\n\
              Connection: keep-alive, Upgrade\r\nSec-WebSocket-Protocol: binary, base64\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/websockify");
        assert_eq!(r.header("host"), Some("127.0.0.1:5900"));
        assert!(r.has_token("connection", "upgrade"));
        assert!(r.has_token("sec-websocket-protocol", "binary"));
        assert!(!r.has_token("sec-websocket-protocol", "bin"));
        for bad in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(bad), Err(HttpError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            parse_request(req.as_bytes()),
            Err(HttpError::TooManyHeaders)
        ));
    }

    #[test]
    fn paths_stay_in_the_root() {
        let dir = std::env::temp_dir().join(format!("saffron-http-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.js"), "x").unwrap();
        std::fs::write(root.join("sub/index.html"), "x").unwrap();
        std::fs::write(root.join(".secret"), "x").unwrap();
        std::fs::write(dir.join("outside"), "x").unwrap();
        let _ = std::os::unix::fs::symlink(dir.join("outside"), root.join("link"));
        let real = |p: &str| root.join(p).canonicalize().unwrap();
        assert_eq!(resolve(&root, "/a.js?x=1"), Ok(real("a.js")));
        assert_eq!(resolve(&root, "/%61.js"), Ok(real("a.js")));
        assert_eq!(resolve(&root, "/sub/"), Ok(real("sub/index.html")));
        assert_eq!(
            resolve(&root, "/./sub//index.html"),
            Ok(real("sub/index.html"))
        );
        assert_eq!(resolve(&root, "/../outside"), Err(PathRefusal::Traversal));
        assert_eq!(
            resolve(&root, "/sub/%2e%2e/a.js"),
            Err(PathRefusal::Traversal)
        );
        assert_eq!(
            resolve(&root, "/sub%2f..%2fa.js"),
            Err(PathRefusal::Traversal)
        );
        assert_eq!(
            resolve(&root, "/..%5coutside"),
            Err(PathRefusal::BadCharacter)
        );
        assert_eq!(resolve(&root, "/a.js%00"), Err(PathRefusal::BadCharacter));
        assert_eq!(resolve(&root, "/%zz"), Err(PathRefusal::BadEscape));
        assert_eq!(resolve(&root, "/%2"), Err(PathRefusal::BadEscape));
        assert_eq!(resolve(&root, "/.secret"), Err(PathRefusal::Hidden));
        assert_eq!(resolve(&root, "/link"), Err(PathRefusal::Outside));
        assert_eq!(resolve(&root, "/nope"), Err(PathRefusal::NotFound));
        assert_eq!(resolve(&root, "/"), Err(PathRefusal::NotFound));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hosts_for_the_redirect() {
        assert_eq!(
            host_and_port("127.0.0.1:5900"),
            Some(("127.0.0.1", Some("5900")))
        );
        assert_eq!(host_and_port("vm.example"), Some(("vm.example", None)));
        assert_eq!(host_and_port("[::1]:5901"), Some(("[::1]", Some("5901"))));
        assert_eq!(host_and_port("[::1]"), Some(("[::1]", None)));
        assert_eq!(host_and_port("a\r\nSet-Cookie: x"), None);
        assert_eq!(host_and_port("a:b"), None);
        assert_eq!(host_and_port("[::1]x"), None);
        assert_eq!(host_and_port(""), None);
    }

    #[test]
    fn types_of_the_client_files() {
        assert!(content_type(Path::new("main.js")).starts_with("text/javascript"));
        assert!(content_type(Path::new("spice_auto.html")).starts_with("text/html"));
        assert_eq!(content_type(Path::new("x.bin")), "application/octet-stream");
    }
}
