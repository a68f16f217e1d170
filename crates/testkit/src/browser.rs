//! A headless Chromium driven over the Chrome DevTools Protocol, for tests of the pages
//! scaletest writes (the HTML report) and serves (the aggregator's live UI): load a page, run
//! JavaScript in it, wait for a condition with a deadline, click and type, take a screenshot,
//! and collect the page's script errors.
//!
//! One websocket to the browser carries every command; each [`Page`] is a target attached in
//! flattened mode, so its commands and events carry its session id. Everything is synchronous:
//! a command is written, then messages are read (events buffered) until its answer arrives.

use serde_json::{json, Value};
use std::cell::RefCell;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long any one protocol command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A running headless Chromium with its own fresh profile; closed (killed if it will not
/// close), and its profile removed, when dropped.
pub struct Browser {
    // Declared first so the connection closes before the process is stopped.
    conn: RefCell<Conn>,
    process: Process,
}

/// A tab. Its script errors are collected from the moment it is opened.
pub struct Page<'a> {
    browser: &'a Browser,
    session: String,
}

/// The browser process and its profile directory, cleaned up on drop (also when the launch
/// fails halfway).
struct Process {
    child: Child,
    profile: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        // Browser::drop asked it to close; give it a moment, then make sure.
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Helper processes may still be writing into the profile for a moment.
        for _ in 0..50 {
            if std::fs::remove_dir_all(&self.profile).is_ok() || !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The websocket and what arrived on it that nobody has asked for yet.
struct Conn {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Events as (session id, method, params), oldest first.
    events: Vec<(String, String, Value)>,
}

impl Conn {
    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<u64, String> {
        self.next_id += 1;
        let mut msg = json!({ "id": self.next_id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .map_err(|e| format!("devtools: cannot send {method}: {e}"))?;
        Ok(self.next_id)
    }

    /// Read one message before `deadline`: `Ok(None)` when the deadline passed first.
    fn read(&mut self, deadline: Instant) -> Result<Option<Value>, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        self.ws
            .get_mut()
            .set_read_timeout(Some(left))
            .map_err(|e| format!("devtools: {e}"))?;
        match self.ws.read() {
            Ok(Message::Text(t)) => serde_json::from_str(t.as_str())
                .map(Some)
                .map_err(|e| format!("devtools: bad message: {e}")),
            Ok(_) => Ok(Some(Value::Null)),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(format!("devtools: connection lost: {e}")),
        }
    }

    /// Keep an event for later; drop other messages.
    fn keep(&mut self, msg: Value) {
        if let Some(method) = msg["method"].as_str() {
            let session = msg["sessionId"].as_str().unwrap_or_default().to_string();
            self.events
                .push((session, method.to_string(), msg["params"].clone()));
        }
    }

    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.send(session, method, params)?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let Some(msg) = self.read(deadline)? else {
                return Err(format!(
                    "devtools: no answer to {method} in {COMMAND_TIMEOUT:?}"
                ));
            };
            if msg["id"].as_u64() == Some(id) {
                if let Some(e) = msg.get("error") {
                    return Err(format!("devtools: {method}: {}", e["message"]));
                }
                return Ok(msg["result"].clone());
            }
            self.keep(msg);
        }
    }

    /// Read whatever has arrived, without waiting.
    fn drain(&mut self) -> Result<(), String> {
        while let Some(msg) = self.read(Instant::now() + Duration::from_millis(1))? {
            self.keep(msg);
        }
        Ok(())
    }
}

impl Browser {
    /// Start Chromium headless on a free port with a fresh profile and connect to it.
    pub fn launch() -> Result<Browser, String> {
        if !Path::new(CHROMIUM).exists() {
            return Err(format!(
                "{CHROMIUM} is not installed (apt-get install chromium)"
            ));
        }
        static N: AtomicU64 = AtomicU64::new(0);
        let profile = std::env::temp_dir().join(format!(
            "st-chromium-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile)
            .map_err(|e| format!("cannot create {}: {e}", profile.display()))?;
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {CHROMIUM}: {e}"))?;
        let mut process = Process { child, profile };
        // Chromium writes the port it picked, then the browser target's path, into the profile.
        let file = process.profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.trim().to_string(), path.trim().to_string());
                }
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                return Err(format!("{CHROMIUM} exited at start ({status})"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{CHROMIUM} did not open its debugging port in 30 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let addr = format!("127.0.0.1:{port}");
        let stream = TcpStream::connect(&addr)
            .map_err(|e| format!("devtools: cannot connect to {addr}: {e}"))?;
        let (ws, _) = tungstenite::client(format!("ws://{addr}{path}"), stream)
            .map_err(|e| format!("devtools: websocket handshake failed: {e}"))?;
        Ok(Browser {
            conn: RefCell::new(Conn {
                ws,
                next_id: 0,
                events: Vec::new(),
            }),
            process,
        })
    }

    /// The browser's profile directory (removed when the browser is dropped).
    pub fn profile(&self) -> &Path {
        &self.process.profile
    }

    /// Open a new tab (1280×900 CSS pixels) on `about:blank`.
    pub fn page(&self) -> Result<Page<'_>, String> {
        let mut c = self.conn.borrow_mut();
        let target = c.call(None, "Target.createTarget", json!({ "url": "about:blank" }))?;
        let attached = c.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or("devtools: no session id")?
            .to_string();
        for method in ["Page.enable", "Runtime.enable", "Log.enable"] {
            c.call(Some(&session), method, json!({}))?;
        }
        c.call(
            Some(&session),
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
        )?;
        drop(c);
        Ok(Page {
            browser: self,
            session,
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A clean close takes its helper processes down with it.
        let _ = self.conn.get_mut().send(None, "Browser.close", json!({}));
    }
}

impl Page<'_> {
    fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.browser
            .conn
            .borrow_mut()
            .call(Some(&self.session), method, params)
    }

    /// Load `url` and wait (up to 30 s) for its load event.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        let mut c = self.browser.conn.borrow_mut();
        c.drain()?;
        c.events
            .retain(|(s, m, _)| !(s == &self.session && m == "Page.loadEventFired"));
        let r = c.call(Some(&self.session), "Page.navigate", json!({ "url": url }))?;
        if let Some(e) = r["errorText"].as_str() {
            return Err(format!("cannot load {url}: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let loaded = c
                .events
                .iter()
                .any(|(s, m, _)| s == &self.session && m == "Page.loadEventFired");
            if loaded {
                return Ok(());
            }
            match c.read(deadline)? {
                Some(msg) => c.keep(msg),
                None => return Err(format!("{url} did not finish loading in 30 s")),
            }
        }
    }

    /// Evaluate a JavaScript expression (awaiting a promise) and return its value as JSON.
    pub fn eval(&self, js: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            let text = e["exception"]["description"]
                .as_str()
                .or(e["text"].as_str())
                .unwrap_or("exception");
            return Err(format!("{js}: {}", first_line(text)));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Wait until the expression `js` is true, checking every 25 ms; an error says what was
    /// awaited and lists the page's script errors.
    pub fn wait_until(&self, js: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(js)? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {js}; page errors: {:?}",
                    self.errors()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Click the first element matching a CSS selector.
    pub fn click(&self, selector: &str) -> Result<(), String> {
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({0}); \
             if (!e) throw new Error('no element ' + {0}); e.click(); return true; }})()",
            json!(selector)
        ))
        .map(drop)
    }

    /// Replace the text of the input matching `selector` as typing would (input events fire).
    pub fn type_into(&self, selector: &str, text: &str) -> Result<(), String> {
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({0}); \
             if (!e) throw new Error('no element ' + {0}); e.focus(); e.select(); return true; }})()",
            json!(selector)
        ))?;
        self.call("Input.insertText", json!({ "text": text }))
            .map(drop)
    }

    /// Save a PNG of the whole page (not just the viewport) to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<(), String> {
        let m = self.call("Page.getLayoutMetrics", json!({}))?;
        let size = &m["cssContentSize"];
        let r = self.call(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1 }
            }),
        )?;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .map_err(|e| format!("devtools: screenshot is not base64: {e}"))?;
        std::fs::write(path, png).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Script errors so far: uncaught exceptions, `console.error` calls, and errors the browser
    /// logged other than failed requests.
    pub fn errors(&self) -> Vec<String> {
        let mut c = self.browser.conn.borrow_mut();
        let _ = c.drain();
        c.events
            .iter()
            .filter(|(s, _, _)| s == &self.session)
            .filter_map(|(_, method, p)| match method.as_str() {
                "Runtime.exceptionThrown" => {
                    let d = &p["exceptionDetails"];
                    let text = d["exception"]["description"]
                        .as_str()
                        .or(d["text"].as_str())
                        .unwrap_or("exception");
                    Some(format!("exception: {}", first_line(text)))
                }
                "Runtime.consoleAPICalled" if p["type"] == "error" => {
                    let args: Vec<String> = p["args"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| match &a["value"] {
                            Value::String(s) => s.clone(),
                            Value::Null => a["description"].as_str().unwrap_or("?").to_string(),
                            v => v.to_string(),
                        })
                        .collect();
                    Some(format!("console.error: {}", args.join(" ")))
                }
                // A failed request is the page's to handle (a test may provoke a 401), so
                // only the browser's other complaints (security, deprecation, ...) count.
                "Log.entryAdded"
                    if p["entry"]["level"] == "error" && p["entry"]["source"] != "network" =>
                {
                    Some(format!(
                        "log: {} {}",
                        p["entry"]["text"].as_str().unwrap_or_default(),
                        p["entry"]["url"].as_str().unwrap_or_default()
                    ))
                }
                _ => None,
            })
            .collect()
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// A browser for a test, or `None` (with a note on stderr) when Chromium is not installed and
/// this is not CI, where it must be. Panics if an installed Chromium fails to start.
pub fn for_test() -> Option<Browser> {
    if !Path::new(CHROMIUM).exists() && std::env::var_os("CI").is_none() {
        crate::checks::skipped(
            "browser checks",
            &format!(
                "{CHROMIUM} is not installed (apt-get install chromium; in CI, where CI is \
                 set, this is a failure)"
            ),
        );
        return None;
    }
    let browser = Browser::launch().unwrap_or_else(|e| panic!("{e}"));
    crate::checks::ran("browser checks");
    Some(browser)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_url(html: &str) -> String {
        let mut url = String::from("data:text/html,");
        for b in html.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~ ".contains(&b) {
                url.push(b as char);
            } else {
                url += &format!("%{b:02X}");
            }
        }
        url
    }

    #[test]
    fn a_page_runs_script_and_reports_its_errors() {
        let Some(browser) = for_test() else { return };
        let page = browser.page().unwrap();
        page.goto(&data_url(
            "<input id=i><button id=b onclick=\"document.title = 'got ' + i.value\">go</button>\
             <script>console.error('bad', 42); setTimeout(() => { throw new Error('late'); }, 50);</script>",
        ))
        .unwrap();
        assert_eq!(page.eval("1 + 2").unwrap(), json!(3));
        page.type_into("#i", "hello").unwrap();
        page.click("#b").unwrap();
        page.wait_until("document.title === 'got hello'", Duration::from_secs(10))
            .unwrap();
        page.wait_until("true", Duration::from_secs(1)).unwrap();
        let errors = page.errors();
        assert!(
            errors.contains(&"console.error: bad 42".to_string()),
            "{errors:?}"
        );
        // The late exception arrives while we wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !page.errors().iter().any(|e| e.contains("Error: late")) {
            assert!(Instant::now() < deadline, "{:?}", page.errors());
            std::thread::sleep(Duration::from_millis(25));
        }
        let e = page.eval("nope.x").unwrap_err();
        assert!(e.contains("ReferenceError"), "{e}");
        let e = page
            .wait_until("false", Duration::from_millis(100))
            .unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(page.click("#missing").is_err());
        let png = std::env::temp_dir().join(format!("st-browser-{}.png", std::process::id()));
        page.screenshot(&png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        std::fs::remove_file(&png).unwrap();
    }

    #[test]
    fn dropping_the_browser_stops_it_and_removes_its_profile() {
        let Some(browser) = for_test() else { return };
        let profile = browser.profile().to_path_buf();
        assert!(profile.exists());
        drop(browser);
        assert!(!profile.exists());
    }
}
