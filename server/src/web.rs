//! A browser on a Spice port: its HTTP request becomes either a WebSocket that the Spice link
//! then runs over, or a file of the web client. See [`crate::http`] for the request's bounds and
//! [`crate::ws`] for the frames.
//!
//! The upgrade follows RFC 6455 §4.2: GET, `Upgrade: websocket`, a `Connection` holding
//! `upgrade`, version 13 (426 with the version we speak otherwise) and a well-formed key. The
//! `binary` subprotocol is echoed when the client offers it (spice-html5 asks for it, and
//! Chromium fails a handshake whose answer lacks a protocol it asked for). With ticketing off,
//! a page of another origin may not open the socket: any web page the user visits could
//! otherwise drive the VM's keyboard through a loopback port without a password.

use std::io;

use tracing::{debug, info, warn};

use crate::http::{self, HttpError, Request};
use crate::server::Shared;
use crate::tls::Stream;
use crate::ws::{self, WsStream};

/// What became of a browser's connection.
pub(crate) enum Outcome {
    /// A WebSocket: the Spice link follows on it.
    Upgraded(Stream),
    /// A file was served, or the request refused; the connection is done.
    Served,
}

/// Reads the request that starts with `first` and answers it.
pub(crate) fn serve(mut stream: Stream, first: &[u8], shared: &Shared) -> io::Result<Outcome> {
    let read = http::read_head(&mut stream, first)
        .and_then(|(head, early)| Ok((http::parse_request(&head)?, early)));
    let (req, early) = match read {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "HTTP request refused");
            if let Some(status) = e.status() {
                let _ = http::respond(&mut stream, status, &[], &format!("{e}\n"));
            }
            return Ok(Outcome::Served);
        }
    };
    // Back to the link stage's per-read bound for what follows.
    stream
        .tcp()
        .set_read_timeout(Some(crate::server::LINK_TIMEOUT))?;
    if req.has_token("upgrade", "websocket") {
        return upgrade(stream, &req, early, shared);
    }
    serve_file(&mut stream, &req, shared)?;
    Ok(Outcome::Served)
}

/// Refuses a request: logs why, answers with `status` and `why`.
fn refuse(
    stream: &mut Stream,
    req: &Request,
    status: &str,
    extra: &[(&str, &str)],
    why: &str,
) -> io::Result<Outcome> {
    warn!(method = %req.method, target = %req.target, status, why, "HTTP request refused");
    http::respond(stream, status, extra, &format!("{why}\n"))?;
    Ok(Outcome::Served)
}

fn upgrade(
    mut stream: Stream,
    req: &Request,
    early: Vec<u8>,
    shared: &Shared,
) -> io::Result<Outcome> {
    if req.method != "GET" {
        return refuse(
            &mut stream,
            req,
            "405 Method Not Allowed",
            &[("Allow", "GET")],
            "a WebSocket upgrade must be a GET",
        );
    }
    if !req.has_token("connection", "upgrade") {
        return refuse(
            &mut stream,
            req,
            "400 Bad Request",
            &[],
            "Upgrade: websocket without Connection: upgrade",
        );
    }
    if req.header("sec-websocket-version") != Some("13") {
        return refuse(
            &mut stream,
            req,
            "426 Upgrade Required",
            &[("Sec-WebSocket-Version", "13")],
            "WebSocket version 13 only",
        );
    }
    let Some(key) = req.header("sec-websocket-key").filter(|k| ws::valid_key(k)) else {
        return refuse(
            &mut stream,
            req,
            "400 Bad Request",
            &[],
            "missing or malformed Sec-WebSocket-Key",
        );
    };
    if shared.config.disable_ticketing && !same_origin(req) {
        return refuse(
            &mut stream,
            req,
            "403 Forbidden",
            &[],
            "with ticketing disabled only this server's own page may open a WebSocket",
        );
    }
    let binary = req.has_token("sec-websocket-protocol", "binary");
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        ws::accept_key(key)
    );
    if binary {
        answer.push_str("Sec-WebSocket-Protocol: binary\r\n");
    }
    answer.push_str("\r\n");
    io::Write::write_all(&mut stream, answer.as_bytes())?;
    info!(target = %req.target, binary, "WebSocket client");
    Ok(Outcome::Upgraded(Stream::WebSocket(Box::new(
        WsStream::new(stream, early)?,
    ))))
}

/// Whether the request's Origin (when a browser sent one) is the host it asked for.
fn same_origin(req: &Request) -> bool {
    let Some(origin) = req.header("origin") else {
        // Not a browser page: a native client, which needs no origin check.
        return true;
    };
    let host = req.header("host").unwrap_or_default();
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or_default();
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

fn serve_file(stream: &mut Stream, req: &Request, shared: &Shared) -> io::Result<()> {
    if req.method != "GET" && req.method != "HEAD" {
        refuse(
            stream,
            req,
            "405 Method Not Allowed",
            &[("Allow", "GET, HEAD")],
            "only GET and HEAD",
        )?;
        return Ok(());
    }
    let Some(root) = &shared.config.web_root else {
        refuse(
            stream,
            req,
            "404 Not Found",
            &[],
            "no web client is served here (saffron --spice-web-root DIR)",
        )?;
        return Ok(());
    };
    let (path, query) = match req.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.target.as_str(), None),
    };
    if path == "/" && root.join(http::AUTO_PAGE).is_file() {
        let location = auto_page_location(stream, req, query);
        debug!(%location, "the web client's page");
        http::respond(
            stream,
            "302 Found",
            &[("Location", &location)],
            "the Spice web client\n",
        )?;
        return Ok(());
    }
    match http::resolve(root, &req.target) {
        Ok(file) => {
            let len = http::send_file(stream, &file, req.method == "GET")?;
            debug!(target = %req.target, len, "served");
        }
        Err(http::PathRefusal::NotFound) => {
            info!(target = %req.target, "HTTP: no such file");
            http::respond(stream, "404 Not Found", &[], "no such file\n")?;
        }
        Err(e) => {
            refuse(stream, req, "403 Forbidden", &[], &e.to_string())?;
        }
    }
    Ok(())
}

/// `/spice_auto.html?host=H&port=P`, from the Host the browser used (the port of the socket when
/// it names none), followed by the request's own query (e.g. `password=…`), so that the page
/// connects back to this very port over WebSocket.
fn auto_page_location(stream: &Stream, req: &Request, query: Option<&str>) -> String {
    let local_port = stream.tcp().local_addr().map(|a| a.port()).unwrap_or(0);
    let mut location = format!("/{}", http::AUTO_PAGE);
    if let Some((host, port)) = req.header("host").and_then(http::host_and_port) {
        let port = port.map_or_else(|| local_port.to_string(), str::to_string);
        location.push_str(&format!("?host={host}&port={port}"));
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            location.push('&');
            location.push_str(q);
        }
    } else if let Some(q) = query.filter(|q| !q.is_empty()) {
        location.push('?');
        location.push_str(q);
    }
    location
}

/// Fuzzing entry point, not API: parses `input` as a request head and checks it the way
/// [`serve`] would (request, upgrade headers, the file path against a root that does not exist).
#[doc(hidden)]
pub fn fuzz_request(input: &[u8]) -> Result<bool, HttpError> {
    let req = http::parse_request(input)?;
    let upgrade = req.has_token("upgrade", "websocket")
        && req.has_token("connection", "upgrade")
        && req.header("sec-websocket-key").is_some_and(ws::valid_key);
    let _ = req.header("host").and_then(http::host_and_port);
    let _ = same_origin(&req);
    let _ = http::resolve(
        std::path::Path::new("/nonexistent-saffron-root"),
        &req.target,
    );
    Ok(upgrade)
}
