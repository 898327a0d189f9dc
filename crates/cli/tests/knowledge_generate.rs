//! `tgcnet knowledge generate` against a stub OpenAI-compatible server on 127.0.0.1.
//!
//! The stub answers a bounded number of requests and stops by itself (after its last
//! request, or after a deadline if the binary never calls). Nothing leaves 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tgcnet_model::knowledge::KnowledgeBase;

/// A request as the stub saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The term from the user message (`Term: "…"`).
    fn term(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body).unwrap();
        let user = v["messages"][1]["content"].as_str().unwrap();
        let start = user.find("Term: \"").unwrap() + "Term: \"".len();
        let end = start + user[start..].find('"').unwrap();
        user[start..end].to_string()
    }
}

type Responder = Box<dyn Fn(usize, &Seen) -> (u16, String) + Send>;

/// Starts the stub on 127.0.0.1:0; it answers at most `max_requests` requests.
fn stub(max_requests: usize, respond: Responder) -> (u16, JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while seen.len() < max_requests && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    if let Some(req) = serve_one(stream, seen.len(), &respond) {
                        seen.push(req);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("stub accept: {e}"),
            }
        }
        seen
    });
    (port, handle)
}

fn serve_one(stream: TcpStream, n: usize, respond: &Responder) -> Option<Seen> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    let seen = Seen {
        method,
        path,
        headers,
        body: String::from_utf8(body).unwrap(),
    };
    let (status, text) = respond(n, &seen);
    let reason = if status == 200 { "OK" } else { "Error" };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.flush();
    Some(seen)
}

/// A chat-completions reply whose message content is `content`.
fn completion(content: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "model": "stub",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
    })
    .to_string()
}

fn xray_for(term: &str) -> String {
    format!("Stub X-ray text for {term}.")
}

fn ct_for(term: &str) -> String {
    format!("Stub CT text for {term}.")
}

fn tgcnet(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tgcnet"));
    c.args(args);
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        c.env_remove(var);
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn write_terms(dir: &Path, terms: &[&str]) -> String {
    let p = dir.join("terms.txt");
    std::fs::write(
        &p,
        format!("# terms for the stub\n\n{}\n", terms.join("\n")),
    )
    .unwrap();
    p.display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn generate_writes_a_knowledge_file() {
    let dir = tempfile::tempdir().unwrap();
    let terms = ["upper left lung", "ground-glass opacity", "honeycomb cysts"];
    let terms_file = write_terms(dir.path(), &terms);
    let out = dir.path().join("k.toml");
    // Three answer styles: plain JSON, a ```json fence, a <think> block and prose around it.
    let (port, server) = stub(
        3,
        Box::new(|n, seen| {
            let t = seen.term();
            let obj = serde_json::json!({"xray": xray_for(&t), "ct": ct_for(&t)}).to_string();
            let content = match n {
                0 => obj,
                1 => format!("```json\n{obj}\n```"),
                _ => format!("<think>The user wants {{json}}.</think>\nHere it is: {obj}"),
            };
            (200, completion(&content))
        }),
    );
    let endpoint = format!("http://127.0.0.1:{port}/v1");
    let o = tgcnet(
        &[
            "knowledge",
            "generate",
            "--endpoint",
            &endpoint,
            "--model",
            "stub",
            "--terms",
            &terms_file,
            "--out",
            out.to_str().unwrap(),
            "--api-key-env",
            "TGCNET_TEST_STUB_KEY",
        ],
        &[("TGCNET_TEST_STUB_KEY", "sk-test-123")],
    );
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    let seen = server.join().unwrap();
    assert_eq!(seen.len(), 3);
    for (s, t) in seen.iter().zip(terms) {
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/v1/chat/completions");
        assert_eq!(s.header("authorization"), Some("Bearer sk-test-123"));
        let body: serde_json::Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(body["model"], "stub");
        assert_eq!(body["messages"][0]["role"], "system");
        assert!(
            body["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("\"ct\"")
        );
        assert_eq!(s.term(), t);
    }

    let kb = KnowledgeBase::from_toml_file(&out).unwrap();
    assert_eq!(kb.len(), 3);
    for (e, t) in kb.entries.iter().zip(terms) {
        assert_eq!(e.term, t);
        assert_eq!(e.xray, xray_for(t));
        assert_eq!(e.ct, ct_for(t));
    }
    // Aliases and class come from the built-in file for known terms only.
    let zone = &kb.entries[0];
    assert_eq!(zone.class.as_deref(), Some("zone"));
    assert!(zone.aliases.iter().any(|a| a == "left upper zone"));
    assert!(kb.entries[2].aliases.is_empty() && kb.entries[2].class.is_none());
    assert_eq!(
        kb.passages[0].text,
        "Upper left lung. X-ray: Stub X-ray text for upper left lung. CT: Stub CT text for upper left lung."
    );
    assert_eq!(
        kb.match_report("Left upper zone and honeycomb cysts"),
        vec![0, 2]
    );

    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("# model:    stub\n"), "{text}");
    assert!(
        text.contains(&format!("# endpoint: {endpoint}\n")),
        "{text}"
    );
    assert!(text.contains("# date:     20"), "{text}");
    assert!(!text.contains("sk-test-123"));
    // Atomic write: no temporary file left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["k.toml", "terms.txt"], "{names:?}");
}

#[test]
fn endpoint_without_v1_and_retry_after_503() {
    let dir = tempfile::tempdir().unwrap();
    let terms_file = write_terms(dir.path(), &["consolidation"]);
    let out = dir.path().join("k.toml");
    let (port, server) = stub(
        2,
        Box::new(|n, seen| {
            if n == 0 {
                return (503, "{\"error\": \"warming up\"}".to_string());
            }
            let t = seen.term();
            let obj = serde_json::json!({"xray": xray_for(&t), "ct": ct_for(&t)}).to_string();
            (200, completion(&obj))
        }),
    );
    let endpoint = format!("http://127.0.0.1:{port}/");
    let o = tgcnet(
        &[
            "knowledge",
            "generate",
            "--endpoint",
            &endpoint,
            "--model",
            "stub",
            "--terms",
            &terms_file,
            "--out",
            out.to_str().unwrap(),
            "--retries",
            "1",
        ],
        &[],
    );
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    let seen = server.join().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.path == "/v1/chat/completions"));
    assert!(seen[0].header("authorization").is_none());
    let kb = KnowledgeBase::from_toml_file(&out).unwrap();
    assert_eq!(kb.entries[0].ct, ct_for("consolidation"));
    assert_eq!(kb.entries[0].class.as_deref(), Some("finding"));
}

/// Runs generate for one term against a stub giving one canned reply; returns the output.
fn failing_run(term: &str, status: u16, body: String) -> (Output, bool) {
    let dir = tempfile::tempdir().unwrap();
    let terms_file = write_terms(dir.path(), &[term]);
    let out = dir.path().join("k.toml");
    let (port, server) = stub(1, Box::new(move |_, _| (status, body.clone())));
    let endpoint = format!("http://127.0.0.1:{port}/v1");
    let o = tgcnet(
        &[
            "knowledge",
            "generate",
            "--endpoint",
            &endpoint,
            "--model",
            "stub",
            "--terms",
            &terms_file,
            "--out",
            out.to_str().unwrap(),
            "--retries",
            "0",
        ],
        &[],
    );
    assert_eq!(server.join().unwrap().len(), 1);
    let written = out.exists();
    (o, written)
}

#[test]
fn http_500_fails_naming_the_term() {
    let (o, written) = failing_run(
        "pleural effusion",
        500,
        "{\"error\": {\"message\": \"backend exploded\"}}".to_string(),
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(!written);
    assert!(e.contains("term \"pleural effusion\""), "{e}");
    assert!(
        e.contains("HTTP 500") && e.contains("backend exploded"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn malformed_answers_fail_naming_the_term() {
    // The model's answer is prose, not the JSON object.
    let (o, written) = failing_run(
        "crazy paving",
        200,
        completion("Crazy paving looks like paving stones."),
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(!written);
    assert!(
        e.contains("term \"crazy paving\"") && e.contains("JSON"),
        "{e}"
    );

    // The server's reply itself is not JSON.
    let (o, _) = failing_run("reticulation", 200, "<html>oops</html>".to_string());
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("term \"reticulation\"") && e.contains("not JSON"),
        "{e}"
    );

    // An empty answer.
    let (o, _) = failing_run("air bronchogram", 200, completion("  "));
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("term \"air bronchogram\"") && e.contains("empty answer"),
        "{e}"
    );

    // A JSON object without the "ct" field.
    let (o, _) = failing_run("nodule", 200, completion("{\"xray\": \"Round.\"}"));
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("term \"nodule\"") && e.contains("\"ct\""), "{e}");
}

#[test]
fn connection_refused_fails_naming_the_term() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let terms_file = write_terms(dir.path(), &["bilateral"]);
    let out = dir.path().join("k.toml");
    let endpoint = format!("http://127.0.0.1:{port}/v1");
    let o = tgcnet(
        &[
            "knowledge",
            "generate",
            "--endpoint",
            &endpoint,
            "--model",
            "stub",
            "--terms",
            &terms_file,
            "--out",
            out.to_str().unwrap(),
            "--retries",
            "0",
            "--timeout-secs",
            "5",
        ],
        &[],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(!out.exists());
    assert!(
        e.contains("term \"bilateral\"") && e.contains("connect"),
        "{e}"
    );
}

#[test]
fn usage_errors_need_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let terms_file = write_terms(dir.path(), &["left"]);
    let out = dir.path().join("k.toml");
    let run = |extra: &[&str], endpoint: &str| {
        let mut args = vec![
            "knowledge",
            "generate",
            "--endpoint",
            endpoint,
            "--model",
            "stub",
            "--terms",
            &terms_file,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        tgcnet(&args, &[])
    };
    let o = run(
        &["--api-key-env", "TGCNET_TEST_SURELY_UNSET_VAR"],
        "http://127.0.0.1:9/v1",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("TGCNET_TEST_SURELY_UNSET_VAR"),
        "{}",
        stderr(&o)
    );

    let o = run(&[], "127.0.0.1:9");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("http://"), "{}", stderr(&o));

    // A term that could never match a report is refused before any request.
    let bad_terms = dir.path().join("bad.txt");
    std::fs::write(&bad_terms, "left\nopacity, nonspecific\n").unwrap();
    let o = tgcnet(
        &[
            "knowledge",
            "generate",
            "--endpoint",
            "http://127.0.0.1:9/v1",
            "--model",
            "stub",
            "--terms",
            bad_terms.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("opacity, nonspecific"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}
