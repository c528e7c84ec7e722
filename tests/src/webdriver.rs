//! A headless Chromium for the browser tests, driven through Debian's `chromedriver` over the
//! W3C WebDriver HTTP API with a tiny HTTP/1.1 client (one request per connection).
//!
//! Chromium runs with its own HOME, whose NSS database trusts the CA a test gives it, so a
//! page on a TLS port whose certificate that CA issued loads over `https://` and `wss://`
//! like any trusted site (no certificate error flag).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A chromedriver process and one browser session in it; both end when it is dropped.
pub struct Chrome {
    driver: Child,
    addr: SocketAddr,
    session: String,
    /// The first window: kept open (a blank page) so that closing a test's tab never ends
    /// the session.
    pub anchor: String,
}

/// What a WebDriver command answered: its `value`, or the error it named.
pub type WdResult = Result<Value, String>;

impl Chrome {
    /// Starts chromedriver and a headless Chromium session. `home` becomes Chromium's HOME;
    /// `trusted_ca` (PEM), when given, is added to its NSS database as a trusted CA.
    pub fn start(home: &Path, trusted_ca: Option<&Path>) -> Result<Chrome, String> {
        std::fs::create_dir_all(home).map_err(|e| format!("{}: {e}", home.display()))?;
        if let Some(ca) = trusted_ca {
            trust_ca(home, ca)?;
        }
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            l.local_addr().map_err(|e| e.to_string())?.port()
        };
        let log =
            std::fs::File::create(home.join("chromedriver.log")).map_err(|e| e.to_string())?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .env("HOME", home)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!("cannot run chromedriver (apt-get install chromium-driver): {e}")
            })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut chrome = Chrome {
            driver,
            addr,
            session: String::new(),
            anchor: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                return Err("chromedriver did not listen within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = home.join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,1024",
                    "--no-first-run", "--disable-background-networking",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let v = chrome.request("POST", "/session", Some(&caps))?;
        chrome.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {v}"))?
            .to_string();
        chrome.set_timeouts(60_000)?;
        chrome.anchor = chrome.window()?;
        Ok(chrome)
    }

    fn set_timeouts(&self, script_ms: u64) -> Result<(), String> {
        self.cmd(
            "POST",
            "timeouts",
            json!({"script": script_ms, "pageLoad": 60_000}),
        )
        .map(|_| ())
    }

    /// One HTTP request to chromedriver; the response's `value`, or its error.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> WdResult {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = TcpStream::connect(self.addr).map_err(|e| format!("chromedriver: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        // chromedriver keeps the connection open whatever we ask: read the head, then exactly
        // Content-Length bytes.
        let mut resp = Vec::new();
        let mut b = [0u8; 4096];
        let (head_end, len) = loop {
            let n = s
                .read(&mut b)
                .map_err(|e| format!("chromedriver {method} {path}: {e}"))?;
            if n == 0 {
                return Err(format!("chromedriver {method} {path}: connection closed"));
            }
            resp.extend_from_slice(&b[..n]);
            if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&resp[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| format!("chromedriver: no Content-Length in {head:?}"))?;
                break (end + 4, len);
            }
        };
        while resp.len() < head_end + len {
            let n = s
                .read(&mut b)
                .map_err(|e| format!("chromedriver {method} {path}: {e}"))?;
            if n == 0 {
                break;
            }
            resp.extend_from_slice(&b[..n]);
        }
        let json_text = String::from_utf8_lossy(&resp[head_end..]);
        let v: Value =
            serde_json::from_str(&json_text).map_err(|e| format!("chromedriver JSON: {e}"))?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if let Some(err) = value.get("error").and_then(Value::as_str) {
            let msg = value.get("message").and_then(Value::as_str).unwrap_or("");
            return Err(format!("{err}: {msg}"));
        }
        if v.get("sessionId").is_some() {
            return Ok(v);
        }
        Ok(value)
    }

    /// A command of this session.
    pub fn cmd(&self, method: &str, what: &str, body: Value) -> WdResult {
        let path = format!("/session/{}/{what}", self.session);
        let body = (method == "POST").then_some(body);
        self.request(method, &path, body.as_ref())
    }

    /// Loads `url` in the current window.
    pub fn navigate(&self, url: &str) -> Result<(), String> {
        self.cmd("POST", "url", json!({"url": url})).map(|_| ())
    }

    /// The current window's handle.
    pub fn window(&self) -> Result<String, String> {
        self.cmd("GET", "window", Value::Null)?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "no window handle".into())
    }

    /// Opens a new tab and makes it current; returns its handle.
    pub fn new_tab(&self) -> Result<String, String> {
        let v = self.cmd("POST", "window/new", json!({"type": "tab"}))?;
        let handle = v["handle"]
            .as_str()
            .ok_or_else(|| format!("no handle in {v}"))?
            .to_string();
        self.switch_to(&handle)?;
        Ok(handle)
    }

    pub fn switch_to(&self, handle: &str) -> Result<(), String> {
        self.cmd("POST", "window", json!({"handle": handle}))
            .map(|_| ())
    }

    /// Closes the current tab and goes back to the anchor window.
    pub fn close_tab(&self) -> Result<(), String> {
        self.cmd("DELETE", "window", Value::Null)?;
        self.switch_to(&self.anchor)
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn execute(&self, script: &str, args: Value) -> WdResult {
        self.cmd(
            "POST",
            "execute/sync",
            json!({"script": script, "args": args}),
        )
    }

    /// Runs `script`, whose last argument is the callback that ends it, in the page.
    pub fn execute_async(&self, script: &str, args: Value) -> WdResult {
        self.cmd(
            "POST",
            "execute/async",
            json!({"script": script, "args": args}),
        )
    }

    /// The text of the open prompt or alert, if one is open.
    pub fn alert_text(&self) -> Option<String> {
        self.cmd("GET", "alert/text", Value::Null)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    }

    /// Types `text` into the open prompt and accepts it.
    pub fn answer_prompt(&self, text: &str) -> Result<(), String> {
        self.cmd("POST", "alert/text", json!({"text": text}))?;
        self.cmd("POST", "alert/accept", json!({})).map(|_| ())
    }

    /// The WebDriver id of the first element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let v = self
            .cmd(
                "POST",
                "element",
                json!({"using": "css selector", "value": css}),
            )
            .ok()?;
        v.as_object()?.values().next()?.as_str().map(str::to_string)
    }

    /// Moves the mouse to (`x`, `y`) of the viewport (CSS pixels) and clicks the left button
    /// there, as a user would: Chromium fires mousemove, mousedown and mouseup at that point.
    pub fn click_at(&self, x: i64, y: i64) -> Result<(), String> {
        let actions = json!({"actions": [{
            "type": "pointer",
            "id": "mouse",
            "parameters": {"pointerType": "mouse"},
            "actions": [
                {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x, "y": y},
                {"type": "pointerDown", "button": 0},
                {"type": "pause", "duration": 50},
                {"type": "pointerUp", "button": 0},
            ],
        }]});
        self.cmd("POST", "actions", actions)?;
        // Forget the pressed state, so that a later action starts from nothing held.
        self.cmd("DELETE", "actions", Value::Null).map(|_| ())
    }

    /// Types `text` into element `id` as a user would (ChromeDriver presses Shift for the
    /// characters that need it on a US keyboard).
    pub fn send_keys(&self, id: &str, text: &str) -> Result<(), String> {
        self.cmd(
            "POST",
            &format!("element/{id}/value"),
            json!({"text": text}),
        )
        .map(|_| ())
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Adds `ca` (PEM) as a trusted CA to the NSS database under `home` (`certutil`, Debian's
/// libnss3-tools), where Chromium on Linux looks for the user's own trust settings.
fn trust_ca(home: &Path, ca: &Path) -> Result<(), String> {
    let db: PathBuf = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).map_err(|e| e.to_string())?;
    let db_arg = format!("sql:{}", db.display());
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("certutil")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run certutil (apt-get install libnss3-tools): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "certutil {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    if !db.join("cert9.db").exists() {
        run(&["-d", &db_arg, "-N", "--empty-password"])?;
    }
    let ca = ca.to_string_lossy();
    run(&[
        "-d",
        &db_arg,
        "-A",
        "-t",
        "C,,",
        "-n",
        "saffron-test-ca",
        "-i",
        &ca,
    ])
}
