//! `tgcnet serve` end to end on a tiny model: the API, a corpus of malformed requests, 100 concurrent
//! requests against a small queue, and the web page in a real headless Chromium.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;

use common::{bin, ok};

/// A tiny trained checkpoint and a phantom picture, made once for every test of this file.
fn model() -> &'static (PathBuf, PathBuf) {
    static MODEL: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tgcnet-serve-test-{}", std::process::id()));
        let data = dir.join("data");
        ok(bin()
            .args(["data", "phantom", "--size", "32", "--n-train", "16", "--n-val", "4", "--seed", "2", "--out"])
            .arg(&data));
        let cfg = dir.join("run.toml");
        std::fs::write(
            &cfg,
            "preset = \"tiny\"\n[train]\nepochs = 1\nbatch_size = 8\nlr = 1e-3\nwarmup_steps = 1\nseed = 1\n",
        )
        .expect("config");
        let run = dir.join("run");
        ok(bin().arg("train").arg("--config").arg(&cfg).arg("--data").arg(&data).arg("--out").arg(&run));
        (run.join("best.safetensors"), data.join("images/phantom_00000.png"))
    })
}

/// A running server, stopped on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        Self::start_with(&model().0, extra)
    }

    fn start_with(ckpt: &Path, extra: &[&str]) -> Self {
        let mut child = bin()
            .arg("serve")
            .arg("--checkpoint")
            .arg(ckpt)
            .args(["--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("address line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 exchange over a fresh connection; `head` is the request line and headers without the
/// final blank line (Content-Length and Connection: close are added).
fn http(addr: &str, head: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let req = format!(
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    // A server may answer (413) before reading a large body; a failed write is then fine.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn get(addr: &str, path: &str) -> Reply {
    http(addr, &format!("GET {path} HTTP/1.1"), b"")
}

const BOUNDARY: &str = "tgcnetBoundary7MA4YWxk";

/// A multipart body of (name, file name, bytes) fields.
fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, file, data) in fields {
        b.extend(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
        );
        if let Some(f) = file {
            b.extend(
                format!("; filename=\"{f}\"\r\nContent-Type: application/octet-stream").as_bytes(),
            );
        }
        b.extend(b"\r\n\r\n");
        b.extend(*data);
        b.extend(b"\r\n");
    }
    b.extend(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

fn post_form(addr: &str, body: &[u8], accept: &str) -> Reply {
    http(
        addr,
        &format!(
            "POST /v1/segment HTTP/1.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nAccept: {accept}"
        ),
        body,
    )
}

fn post_json(addr: &str, body: &str) -> Reply {
    http(
        addr,
        "POST /v1/segment HTTP/1.1\r\nContent-Type: application/json",
        body.as_bytes(),
    )
}

const CAPTION: &str = "Unilateral pulmonary infection, one infected area, upper left lung.";

fn picture() -> Vec<u8> {
    std::fs::read(&model().1).expect("phantom picture")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode_png(b64_png: &str) -> image::DynamicImage {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64_png)
        .expect("base64");
    image::load_from_memory(&bytes).expect("png")
}

#[test]
fn api_answers_json_png_and_describes_the_model() {
    let s = Server::start(&[]);
    assert_eq!(get(&s.addr, "/healthz").json()["status"], "ok");
    let m = get(&s.addr, "/v1/model").json();
    assert_eq!(m["image_size"], 32);
    assert_eq!(m["laterality"], "image");
    assert!(m["parameters"].as_u64().is_some_and(|p| p > 0));
    let page = get(&s.addr, "/");
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains("/v1/segment") && !html.contains("http://") && !html.contains("https://")
    );

    let pic = picture();
    let r = post_form(
        &s.addr,
        &multipart(&[
            ("image", Some("chest.png"), &pic),
            ("text", None, CAPTION.as_bytes()),
        ]),
        "application/json",
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    let fg = j["foreground_fraction"].as_f64().expect("fraction");
    assert!((0.0..=1.0).contains(&fg));
    assert_eq!(
        (j["width"].as_u64(), j["height"].as_u64()),
        (Some(32), Some(32))
    );
    for k in [
        "mask_png",
        "overlay_png",
        "heatmap_png",
        "probability_png",
        "picture_png",
    ] {
        let img = decode_png(j[k].as_str().unwrap_or_else(|| panic!("{k}")));
        assert_eq!((img.width(), img.height()), (32, 32), "{k}");
    }
    for k in ["queue", "decode", "model", "total"] {
        assert!(j["timings_ms"][k].as_f64().is_some_and(|v| v >= 0.0), "{k}");
    }

    // The same request as JSON with base64, in the patient's convention: the model reads "right".
    let r = post_json(
        &s.addr,
        &serde_json::json!({"image": b64(&pic), "text": CAPTION, "laterality": "patient", "threshold": 0.3}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert!(
        j["caption"]
            .as_str()
            .is_some_and(|c| c.contains("upper right lung")),
        "{j}"
    );
    assert_eq!(j["threshold"], 0.3f32 as f64);

    // Accept: image/png gives the mask itself.
    let r = post_form(
        &s.addr,
        &multipart(&[
            ("image", Some("c.png"), &pic),
            ("text", None, CAPTION.as_bytes()),
        ]),
        "image/png",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert!(r.header("x-foreground-fraction").is_some());
    let mask = image::load_from_memory(&r.body).expect("mask png");
    assert_eq!((mask.width(), mask.height()), (32, 32));
}

#[test]
fn malformed_requests_get_clean_errors_and_the_server_lives() {
    let s = Server::start(&[
        "--max-upload-mb",
        "1",
        "--max-pixels",
        "100000",
        "--max-caption-chars",
        "200",
    ]);
    let pic = picture();
    // A PNG header declaring 100000 x 100000 pixels: a decompression bomb.
    let mut bomb = Vec::new();
    image::GrayImage::new(8, 8)
        .write_to(
            &mut std::io::Cursor::new(&mut bomb),
            image::ImageFormat::Png,
        )
        .expect("png");
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let truncated = &pic[..pic.len() / 2];
    let big = vec![7u8; 2 * 1024 * 1024];
    let long = "upper left lung ".repeat(40);
    let dicom_garbage = {
        let mut d = vec![0u8; 128];
        d.extend(b"DICM");
        d.extend([1, 2, 3, 4, 5]);
        d
    };
    let form = |f: &[(&str, Option<&str>, &[u8])]| multipart(f);
    let cases: Vec<(&str, Reply, u16)> = vec![
        (
            "no content type",
            http(&s.addr, "POST /v1/segment HTTP/1.1", b"hello"),
            415,
        ),
        (
            "plain text",
            http(
                &s.addr,
                "POST /v1/segment HTTP/1.1\r\nContent-Type: text/plain",
                b"x",
            ),
            415,
        ),
        ("empty JSON body", post_json(&s.addr, ""), 400),
        ("JSON garbage", post_json(&s.addr, "{not json"), 400),
        ("JSON array", post_json(&s.addr, "[1,2]"), 400),
        (
            "JSON without image",
            post_json(&s.addr, &format!("{{\"text\": \"{CAPTION}\"}}")),
            400,
        ),
        (
            "JSON without text",
            post_json(&s.addr, &format!("{{\"image\": \"{}\"}}", b64(&pic))),
            400,
        ),
        (
            "JSON bad base64",
            post_json(
                &s.addr,
                &format!("{{\"image\": \"%%%\", \"text\": \"{CAPTION}\"}}"),
            ),
            400,
        ),
        (
            "JSON unknown field (a server path)",
            post_json(
                &s.addr,
                &format!(
                    "{{\"image\": \"{}\", \"text\": \"{CAPTION}\", \"path\": \"/etc/passwd\"}}",
                    b64(&pic)
                ),
            ),
            400,
        ),
        (
            "JSON wrong type",
            post_json(
                &s.addr,
                &format!("{{\"image\": 5, \"text\": \"{CAPTION}\"}}"),
            ),
            400,
        ),
        (
            "JSON bad laterality",
            post_json(
                &s.addr,
                &format!(
                    "{{\"image\": \"{}\", \"text\": \"{CAPTION}\", \"laterality\": \"up\"}}",
                    b64(&pic)
                ),
            ),
            400,
        ),
        (
            "threshold above 1",
            post_json(
                &s.addr,
                &format!(
                    "{{\"image\": \"{}\", \"text\": \"{CAPTION}\", \"threshold\": 3}}",
                    b64(&pic)
                ),
            ),
            400,
        ),
        (
            "garbage picture",
            post_form(
                &s.addr,
                &form(&[
                    ("image", Some("a.png"), b"not a picture"),
                    ("text", None, CAPTION.as_bytes()),
                ]),
                "*/*",
            ),
            400,
        ),
        (
            "truncated PNG",
            post_form(
                &s.addr,
                &form(&[
                    ("image", Some("a.png"), truncated),
                    ("text", None, CAPTION.as_bytes()),
                ]),
                "*/*",
            ),
            400,
        ),
        (
            "decompression bomb",
            post_form(
                &s.addr,
                &form(&[
                    ("image", Some("a.png"), &bomb),
                    ("text", None, CAPTION.as_bytes()),
                ]),
                "*/*",
            ),
            400,
        ),
        (
            "broken DICOM",
            post_form(
                &s.addr,
                &form(&[
                    ("image", Some("a.dcm"), &dicom_garbage),
                    ("text", None, CAPTION.as_bytes()),
                ]),
                "*/*",
            ),
            400,
        ),
        (
            "empty picture",
            post_form(
                &s.addr,
                &form(&[
                    ("image", Some("a.png"), b""),
                    ("text", None, CAPTION.as_bytes()),
                ]),
                "*/*",
            ),
            400,
        ),
        (
            "no image field",
            post_form(&s.addr, &form(&[("text", None, CAPTION.as_bytes())]), "*/*"),
            400,
        ),
        (
            "no text field",
            post_form(&s.addr, &form(&[("image", Some("a.png"), &pic)]), "*/*"),
            400,
        ),
        (
            "empty caption",
            post_form(
                &s.addr,
                &form(&[("image", Some("a.png"), &pic), ("text", None, b"   ")]),
                "*/*",
            ),
            400,
        ),
        (
            "caption too long",
            post_form(
                &s.addr,
                &form(&[
                    ("image", Some("a.png"), &pic),
                    ("text", None, long.as_bytes()),
                ]),
                "*/*",
            ),
            400,
        ),
        (
            "caption not UTF-8",
            post_form(
                &s.addr,
                &form(&[
                    ("image", Some("a.png"), &pic),
                    ("text", None, &[0xff, 0xfe]),
                ]),
                "*/*",
            ),
            400,
        ),
        (
            "threshold not a number",
            post_form(
                &s.addr,
                &form(&[
                    ("image", Some("a.png"), &pic),
                    ("text", None, CAPTION.as_bytes()),
                    ("threshold", None, b"high"),
                ]),
                "*/*",
            ),
            400,
        ),
        (
            "multipart without boundary",
            http(
                &s.addr,
                "POST /v1/segment HTTP/1.1\r\nContent-Type: multipart/form-data",
                b"--x\r\n",
            ),
            400,
        ),
        (
            "multipart cut short",
            post_form(
                &s.addr,
                &form(&[("image", Some("a.png"), &pic)])[..60],
                "*/*",
            ),
            400,
        ),
        (
            "upload too large",
            post_form(
                &s.addr,
                &form(&[
                    ("image", Some("a.png"), &big),
                    ("text", None, CAPTION.as_bytes()),
                ]),
                "*/*",
            ),
            413,
        ),
        ("GET on the POST route", get(&s.addr, "/v1/segment"), 405),
        ("unknown route", get(&s.addr, "/../../etc/passwd"), 404),
    ];
    assert!(cases.len() >= 20);
    for (name, reply, want) in &cases {
        assert_eq!(
            reply.status,
            *want,
            "{name}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        if reply.status != 405 {
            let j = reply.json();
            assert!(
                j["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{name}: {j}"
            );
        }
    }
    // Alive, and still segmenting.
    assert_eq!(get(&s.addr, "/healthz").status, 200);
    let r = post_form(
        &s.addr,
        &multipart(&[
            ("image", Some("c.png"), &pic),
            ("text", None, CAPTION.as_bytes()),
        ]),
        "application/json",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn hundred_concurrent_requests_are_answered_or_refused_cleanly() {
    let s = Server::start(&["--queue", "4", "--workers", "1"]);
    let body = multipart(&[
        ("image", Some("c.png"), &picture()),
        ("text", None, CAPTION.as_bytes()),
    ]);
    let started = Instant::now();
    let results: Vec<(u16, f64, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..100)
            .map(|_| {
                scope.spawn(|| {
                    let t0 = Instant::now();
                    let r = post_form(&s.addr, &body, "application/json");
                    (
                        r.status,
                        t0.elapsed().as_secs_f64() * 1e3,
                        r.header("retry-after").map(str::to_string),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let ok: Vec<f64> = results.iter().filter(|r| r.0 == 200).map(|r| r.1).collect();
    let busy = results.iter().filter(|r| r.0 == 503).count();
    for (status, _, retry) in &results {
        assert!(*status == 200 || *status == 503, "status {status}");
        if *status == 503 {
            assert_eq!(retry.as_deref(), Some("1"), "503 without Retry-After");
        }
    }
    assert_eq!(ok.len() + busy, 100, "every request answered");
    assert!(!ok.is_empty());
    let mut lat = ok.clone();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    println!(
        "100 concurrent requests in {:.1} s: {} answered (p50 {:.0} ms, p95 {:.0} ms), {busy} refused with 503",
        started.elapsed().as_secs_f64(),
        ok.len(),
        pct(0.5),
        pct(0.95)
    );
    assert_eq!(
        get(&s.addr, "/healthz").status,
        200,
        "alive after the burst"
    );
}

/// The web page in headless Chromium, driven over the DevTools protocol: load the page, choose a
/// picture in the file input, type a report, press Segment, and find the overlay drawn.
#[test]
fn web_page_segments_in_a_real_browser() {
    let Some(chrome) = chromium() else {
        eprintln!(
            "SKIPPED web_page_segments_in_a_real_browser: no chromium on PATH (.ci/run installs the Debian package)"
        );
        return;
    };
    // TGCNET_SERVE_TEST_CHECKPOINT / _PICTURE swap in another model and picture, and
    // TGCNET_SERVE_TEST_SCREENSHOT saves the page (how docs/serve-page.png is made).
    let env = |k: &str| std::env::var_os(k).map(PathBuf::from);
    let s = match env("TGCNET_SERVE_TEST_CHECKPOINT") {
        Some(c) => Server::start_with(&c, &[]),
        None => Server::start(&[]),
    };
    let picture = env("TGCNET_SERVE_TEST_PICTURE").unwrap_or_else(|| model().1.clone());
    let profile = tempfile::tempdir().expect("profile");
    let mut browser = Command::new(&chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-port=0",
            "--window-size=1300,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start chromium");
    let ws = devtools_url(&mut browser);
    let shot = env("TGCNET_SERVE_TEST_SCREENSHOT");
    let result = std::panic::catch_unwind(|| drive(&ws, &s.addr, &picture, shot.as_deref()));
    let _ = browser.kill();
    let _ = browser.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(p) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        }) {
            return Some(p);
        }
    }
    None
}

/// The browser's DevTools WebSocket address, read from its stderr ("DevTools listening on ws://...").
fn devtools_url(browser: &mut Child) -> String {
    let stderr = browser.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(url) = l.split("DevTools listening on ").nth(1) {
                    // Keep draining stderr so that the browser never blocks on a full pipe.
                    std::thread::spawn(move || for _ in lines {});
                    return url.trim().to_string();
                }
            }
            _ => break,
        }
    }
    panic!("chromium did not report its DevTools address");
}

/// A minimal DevTools-protocol client: one page target, commands answered by id.
struct Cdp {
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Cdp {
    fn call(
        &mut self,
        method: &str,
        params: serde_json::Value,
        session: Option<&str>,
    ) -> serde_json::Value {
        self.next += 1;
        let mut msg = serde_json::json!({"id": self.next, "method": method, "params": params});
        if let Some(sid) = session {
            msg["sessionId"] = sid.into();
        }
        self.socket
            .send(tungstenite::Message::text(msg.to_string()))
            .expect("send");
        loop {
            let m = self.socket.read().expect("read");
            let Ok(text) = m.to_text() else { continue };
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            if v["id"].as_u64() == Some(self.next) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }
}

fn drive(ws: &str, addr: &str, picture: &Path, screenshot: Option<&Path>) {
    let width = image::image_dimensions(picture).map(|d| d.0).unwrap_or(0);
    let (socket, _) = tungstenite::connect(ws).expect("devtools websocket");
    let mut cdp = Cdp { socket, next: 0 };
    let target = cdp.call(
        "Target.createTarget",
        serde_json::json!({"url": "about:blank"}),
        None,
    );
    let attached = cdp.call(
        "Target.attachToTarget",
        serde_json::json!({"targetId": target["targetId"], "flatten": true}),
        None,
    );
    let sid = attached["sessionId"].as_str().expect("session").to_string();
    let sid = Some(sid.as_str());
    cdp.call("Page.enable", serde_json::json!({}), sid);
    cdp.call(
        "Page.navigate",
        serde_json::json!({"url": format!("http://{addr}/")}),
        sid,
    );
    let eval = |cdp: &mut Cdp, js: &str| -> serde_json::Value {
        cdp.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            sid,
        )["result"]["value"]
            .clone()
    };
    wait_for(
        &mut |c: &mut Cdp| {
            eval(
                c,
                "document.readyState === 'complete' && !!document.getElementById('file')",
            ) == true
        },
        &mut cdp,
    );
    // Choose the picture in the file input, as a user's file dialog does.
    let doc = cdp.call("DOM.getDocument", serde_json::json!({}), sid);
    let input = cdp.call(
        "DOM.querySelector",
        serde_json::json!({"nodeId": doc["root"]["nodeId"], "selector": "#file"}),
        sid,
    );
    cdp.call(
        "DOM.setFileInputFiles",
        serde_json::json!({"nodeId": input["nodeId"], "files": [picture.display().to_string()]}),
        sid,
    );
    // Type the report: focus the text box and insert the text as keyboard input.
    eval(&mut cdp, "document.getElementById('text').focus(); true");
    cdp.call(
        "Input.insertText",
        serde_json::json!({"text": CAPTION}),
        sid,
    );
    wait_for(
        &mut |c: &mut Cdp| eval(c, "!document.getElementById('go').disabled") == true,
        &mut cdp,
    );
    eval(&mut cdp, "document.getElementById('go').click(); true");
    // The overlay canvas gets the picture's size and the result panel shows.
    wait_for(
        &mut |c: &mut Cdp| {
            eval(
                c,
                &format!(
                    "!document.getElementById('result').hidden && document.getElementById('overlay').width === {width} && document.getElementById('status').textContent === 'done'"
                ),
            ) == true
        },
        &mut cdp,
    );
    if let Some(path) = screenshot {
        use base64::Engine;
        let shot = cdp.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png"}),
            sid,
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot"))
            .expect("base64");
        std::fs::write(path, png).expect("write the screenshot");
    }
    let heat = eval(
        &mut cdp,
        "document.getElementById('heatmap').src.startsWith('data:image/png;base64,')",
    );
    assert_eq!(heat, true, "heatmap shown");
    let fg = eval(&mut cdp, "document.getElementById('fg').textContent");
    assert!(fg.as_str().is_some_and(|t| t.ends_with('%')), "{fg}");
    // The threshold slider redraws without a request.
    eval(
        &mut cdp,
        "const t = document.getElementById('threshold'); t.value = '0.95'; t.dispatchEvent(new Event('input')); true",
    );
    assert_eq!(
        eval(&mut cdp, "document.getElementById('thvalue').textContent"),
        "0.95"
    );
}

fn wait_for(check: &mut dyn FnMut(&mut Cdp) -> bool, cdp: &mut Cdp) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check(cdp) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the page did not reach the expected state within 60 s");
}
