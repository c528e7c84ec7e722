//! The control socket: one JSON object per line each way.
//!
//! Requests are `{"cmd":"<name>", ...}`; every reply has `"ok": true|false`, and failures carry
//! `"error"`. A malformed line gets an error reply and the connection stays open.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use serde_json::{Value, json};
use tracing::{debug, info, warn};

/// Longest request line accepted; a longer one closes the connection (the socket is for
/// small commands, and a peer must not make us buffer without bound).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Connections served at once; more are refused with an error line.
pub const MAX_CONNECTIONS: usize = 8;

/// Answers control requests.
pub trait ControlHandler: Send + Sync + 'static {
    /// Handles one request whose `cmd` is `cmd`; returns the reply object (without `ok`
    /// when successful is fine: `ok: true` is added), or an error message.
    fn handle(&self, cmd: &str, request: &Value) -> Result<Value, String>;
}

/// A listening control socket; the file is removed on drop.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path` and serves it on a background thread.
    pub fn start(path: &Path, handler: Arc<dyn ControlHandler>) -> std::io::Result<Self> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("control socket {} is in use", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        let active = Arc::new(AtomicUsize::new(0));
        thread::Builder::new()
            .name("saffron-control".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(mut stream) = stream else { continue };
                    if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                        let _ = writeln!(
                            stream,
                            "{}",
                            json!({"ok": false, "error": "too many connections"})
                        );
                        continue;
                    }
                    active.fetch_add(1, Ordering::AcqRel);
                    let handler = Arc::clone(&handler);
                    let active = Arc::clone(&active);
                    let spawned = thread::Builder::new()
                        .name("saffron-control-conn".into())
                        .spawn(move || {
                            serve(stream, handler.as_ref());
                            active.fetch_sub(1, Ordering::AcqRel);
                        });
                    if let Err(e) = spawned {
                        warn!("control connection thread: {e}");
                    }
                }
            })?;
        info!(path = %path.display(), "control socket listening");
        Ok(ControlSocket {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Parses and answers one request line.
pub fn answer(line: &str, handler: &dyn ControlHandler) -> Value {
    let request: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return json!({"ok": false, "error": format!("not JSON: {e}")}),
    };
    let Some(cmd) = request.get("cmd").and_then(Value::as_str) else {
        return json!({"ok": false, "error": "missing \"cmd\""});
    };
    match handler.handle(cmd, &request) {
        Ok(mut v) => {
            if let Value::Object(map) = &mut v {
                map.insert("ok".into(), Value::Bool(true));
                v
            } else {
                json!({"ok": true, "result": v})
            }
        }
        Err(e) => json!({"ok": false, "error": e}),
    }
}

fn serve(stream: UnixStream, handler: &dyn ControlHandler) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_REQUEST_BYTES as u64 + 1);
        match limited.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() > MAX_REQUEST_BYTES {
            let _ = writeln!(
                writer,
                "{}",
                json!({"ok": false, "error": "request too long"})
            );
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        debug!(request = text, "control");
        // One write per reply, so a reader never sees half a line.
        let mut reply = answer(text, handler).to_string();
        reply.push('\n');
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

use std::io::Read as _;

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl ControlHandler for Echo {
        fn handle(&self, cmd: &str, _request: &Value) -> Result<Value, String> {
            match cmd {
                "status" => Ok(json!({"state": "running"})),
                other => Err(format!("unknown command '{other}'")),
            }
        }
    }

    #[test]
    fn replies() {
        assert_eq!(
            answer(r#"{"cmd":"status"}"#, &Echo),
            json!({"ok": true, "state": "running"})
        );
        assert_eq!(answer(r#"{"cmd":"nope"}"#, &Echo)["ok"], json!(false));
        assert_eq!(answer("garbage", &Echo)["ok"], json!(false));
        assert_eq!(answer("{}", &Echo)["error"], json!("missing \"cmd\""));
    }

    #[test]
    fn over_a_socket() {
        let dir = std::env::temp_dir().join(format!("saffron-ctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.sock");
        let _sock = ControlSocket::start(&path, Arc::new(Echo)).unwrap();
        let s = UnixStream::connect(&path).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        writeln!(w, "not json\n{{\"cmd\":\"status\"}}").unwrap();
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        assert!(l.contains("\"ok\":false"));
        l.clear();
        r.read_line(&mut l).unwrap();
        assert!(l.contains("running"));
        w.write_all(&vec![b'x'; MAX_REQUEST_BYTES + 10]).unwrap();
        l.clear();
        r.read_line(&mut l).unwrap();
        assert!(l.contains("too long"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
