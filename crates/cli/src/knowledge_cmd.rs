//! `tgcnet knowledge …`: radiological knowledge passages for DATE.
//!
//! `tgcnet knowledge generate --endpoint URL --model NAME [--terms FILE] --out FILE
//! [--api-key-env VAR]` asks an OpenAI-compatible chat-completions server (vLLM, llama.cpp,
//! Ollama, OpenAI, …) for one X-ray and one CT description per term, one request per term,
//! and writes a knowledge file (the format of `knowledge/default.toml`, see
//! `tgcnet_model::knowledge`).
//!
//! - Endpoint: the request goes to `POST {base}/v1/chat/completions`. `--endpoint` may be the
//!   server root (`http://localhost:8000`), the API base with the trailing `/v1`
//!   (`http://localhost:8000/v1`), or the full `…/chat/completions` URL, which is used as is.
//!   A base whose path ends in anything but `/v1` gets `/v1` appended. `https://` needs the
//!   `https` cargo feature (rustls); plain `http://` always works.
//! - Reply: the model is asked for a JSON object `{"xray": "...", "ct": "..."}`; code fences
//!   (```` ```json ````), `<think>…</think>` blocks and text around the object are tolerated.
//! - Aliases and word classes are copied from the built-in knowledge file when it has the
//!   term; other terms match only themselves.
//! - Failures (connection refused, timeout, HTTP error status, malformed JSON, empty answer)
//!   stop the run with a message naming the term, nothing is written, and the exit code is 1.
//!   Connection errors, timeouts, HTTP 429 and 5xx are retried `--retries` times first.
//! - The output is written atomically (temporary file in the same folder, then rename), with a
//!   header comment naming the model, the endpoint and the date.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tgcnet_model::knowledge::{KnowledgeBase, KnowledgeEntry};

/// Longest accepted `xray` or `ct` answer, in characters ("one or two sentences").
const MAX_FIELD_CHARS: usize = 1000;
/// Characters of a reply quoted in error messages.
const EXCERPT_CHARS: usize = 300;

const SYSTEM_PROMPT: &str = "You are a thoracic radiologist writing short reference \
descriptions for a model that segments lung lesions in chest X-rays and CT scans guided by \
the clinical report. For the term given by the user, answer with only a JSON object \
{\"xray\": \"...\", \"ct\": \"...\"}: \"xray\" is one or two sentences on how the term appears \
on a frontal chest X-ray, \"ct\" is one or two sentences on how it appears on chest CT. Use \
standard terminology (Fleischner Society glossary), be factual and concise (at most 40 words \
per field), and write no markdown and no text outside the JSON object.";

#[derive(Subcommand, Debug)]
pub enum KnowledgeCommand {
    /// Ask an OpenAI-compatible chat-completions endpoint for X-ray/CT descriptions of each
    /// term (one request per term) and write a knowledge file.
    Generate(GenerateArgs),
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Server URL, with or without the trailing /v1 (http://localhost:8000 or
    /// http://localhost:8000/v1); requests go to {base}/v1/chat/completions. A URL ending in
    /// /chat/completions is used as is.
    #[arg(long)]
    pub endpoint: String,
    /// Model name sent in the request.
    #[arg(long)]
    pub model: String,
    /// Terms, one per line (blank lines and lines starting with # are skipped).
    /// Default: the terms of the built-in knowledge file.
    #[arg(long)]
    pub terms: Option<PathBuf>,
    /// Knowledge file to write (TOML).
    #[arg(long)]
    pub out: PathBuf,
    /// Name of the environment variable holding the API key (sent as a Bearer token).
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Seconds allowed per request (connect, send and the whole answer).
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Retries per term after a connection error, a timeout, HTTP 429 or HTTP 5xx.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Sampling temperature sent with each request.
    #[arg(long, default_value_t = 0.2)]
    pub temperature: f64,
}

pub fn run(c: KnowledgeCommand) -> anyhow::Result<i32> {
    match c {
        KnowledgeCommand::Generate(a) => generate(a),
    }
}

fn generate(a: GenerateArgs) -> anyhow::Result<i32> {
    let url = chat_completions_url(&a.endpoint)?;
    if url.starts_with("https://") && !cfg!(feature = "https") {
        bail!(
            "{url}: this tgcnet was built without TLS; rebuild with `--features https` or use \
             an http:// endpoint (e.g. a local vLLM, llama.cpp or Ollama server)"
        );
    }
    if a.model.trim().is_empty() {
        bail!("--model is empty");
    }
    if a.timeout_secs == 0 {
        bail!("--timeout-secs must be at least 1");
    }
    let api_key = match &a.api_key_env {
        None => None,
        Some(var) => match std::env::var(var) {
            Ok(k) if !k.trim().is_empty() => Some(k.trim().to_string()),
            Ok(_) => bail!("--api-key-env {var}: the environment variable is empty"),
            Err(_) => bail!("--api-key-env {var}: the environment variable is not set"),
        },
    };

    let defaults = KnowledgeBase::default_base().context("reading the built-in knowledge file")?;
    let terms = match &a.terms {
        Some(p) => read_terms(p)?,
        None => defaults.entries.iter().map(|e| e.term.clone()).collect(),
    };
    let out_name = a.out.display().to_string();
    // Validate the terms (matchable, distinct) before spending any request.
    let skeleton: Vec<KnowledgeEntry> = terms
        .iter()
        .map(|t| entry_for(&defaults, t, "x".into(), "x".into()))
        .collect();
    KnowledgeBase::from_entries(skeleton, &out_name).context("invalid terms")?;

    let client = Client::new(&url, &a, api_key)?;
    let mut entries = Vec::with_capacity(terms.len());
    for (i, term) in terms.iter().enumerate() {
        eprint!("[{}/{}] {term} … ", i + 1, terms.len());
        let answer = client.ask(term);
        match answer {
            Ok((xray, ct)) => {
                eprintln!("ok");
                entries.push(entry_for(&defaults, term, xray, ct));
            }
            Err(e) => {
                eprintln!("failed");
                return Err(e.context(format!(
                    "no knowledge written to {out_name} ({} of {} terms done)",
                    i,
                    terms.len()
                )));
            }
        }
    }

    let kb = KnowledgeBase::from_entries(entries, &out_name)?;
    let text = format!(
        "{}\n{}",
        header(&a.model, &a.endpoint, &utc_now()),
        kb.to_toml()
    );
    // The file must read back exactly as validated.
    KnowledgeBase::from_toml_str(&text, &out_name)
        .context("internal error: the generated knowledge file does not parse back")?;
    write_atomic(&a.out, &text)?;
    eprintln!("wrote {} passages to {out_name}", kb.len());
    Ok(0)
}

/// `{base}/v1/chat/completions` from the user's endpoint (see the module docs).
fn chat_completions_url(endpoint: &str) -> anyhow::Result<String> {
    let e = endpoint.trim();
    let Some((scheme, rest)) = e.split_once("://") else {
        bail!("--endpoint {e:?}: expected an http:// or https:// URL");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        bail!("--endpoint {e:?}: expected an http:// or https:// URL");
    }
    if rest.contains(['?', '#']) {
        bail!("--endpoint {e:?}: a query string or fragment is not supported");
    }
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.starts_with('/') {
        bail!("--endpoint {e:?}: the URL has no host");
    }
    let base = format!("{scheme}://{rest}");
    Ok(if base.ends_with("/chat/completions") {
        base
    } else if base.ends_with("/v1") {
        format!("{base}/chat/completions")
    } else {
        format!("{base}/v1/chat/completions")
    })
}

/// The endpoint for the header: no credentials, no query.
fn public_endpoint(endpoint: &str) -> String {
    let e = endpoint.trim();
    let e = e.split(['?', '#']).next().unwrap_or(e);
    match e.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => e.to_string(),
    }
}

fn read_terms(p: &Path) -> anyhow::Result<Vec<String>> {
    let s = std::fs::read_to_string(p)
        .with_context(|| format!("--terms {}: cannot read the file", p.display()))?;
    let mut terms: Vec<String> = Vec::new();
    for line in s.lines() {
        let t = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if terms.iter().any(|x| x.eq_ignore_ascii_case(&t)) {
            eprintln!(
                "warning: --terms {}: {t:?} listed twice, asked once",
                p.display()
            );
            continue;
        }
        terms.push(t);
    }
    if terms.is_empty() {
        bail!("--terms {}: no terms in the file", p.display());
    }
    Ok(terms)
}

/// An entry for `term`, with aliases and class from the built-in file when it has the term.
fn entry_for(defaults: &KnowledgeBase, term: &str, xray: String, ct: String) -> KnowledgeEntry {
    let known = defaults.index_of(term).map(|i| &defaults.entries[i]);
    KnowledgeEntry {
        term: term.to_string(),
        aliases: known.map(|e| e.aliases.clone()).unwrap_or_default(),
        class: known.and_then(|e| e.class.clone()),
        xray,
        ct,
        // The generated text replaces the convention-specific variants too: a chat model is asked
        // for one description per term.
        ..KnowledgeEntry::default()
    }
}

struct Client {
    agent: ureq::Agent,
    url: String,
    model: String,
    api_key: Option<String>,
    retries: u32,
    timeout_secs: u64,
    temperature: f64,
}

/// One failed attempt: whether it is worth retrying, and the message.
struct Failure {
    retry: bool,
    message: String,
}

impl Client {
    fn new(url: &str, a: &GenerateArgs, api_key: Option<String>) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(a.timeout_secs);
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(15))))
            .http_status_as_error(false)
            .user_agent(concat!("tgcnet/", env!("CARGO_PKG_VERSION")));
        if is_loopback(url) {
            // Never send a local request through a proxy from the environment.
            config = config.proxy(None);
        }
        Ok(Self {
            agent: config.build().into(),
            url: url.to_string(),
            model: a.model.clone(),
            api_key,
            retries: a.retries,
            timeout_secs: a.timeout_secs,
            temperature: a.temperature,
        })
    }

    /// The (xray, ct) sentences for `term`.
    fn ask(&self, term: &str) -> anyhow::Result<(String, String)> {
        let mut attempt = 0;
        loop {
            match self.attempt(term) {
                Ok(r) => return Ok(r),
                Err(f) if f.retry && attempt < self.retries => {
                    attempt += 1;
                    eprint!("({}; retry {attempt}/{}) … ", f.message, self.retries);
                    std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
                }
                Err(f) => {
                    let tries = if attempt > 0 {
                        format!(" (after {} attempts)", attempt + 1)
                    } else {
                        String::new()
                    };
                    return Err(anyhow!("term {term:?}: {}{tries}", f.message));
                }
            }
        }
    }

    fn attempt(&self, term: &str) -> Result<(String, String), Failure> {
        let body = json!({
            "model": self.model,
            "temperature": self.temperature,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": format!(
                    "Term: \"{term}\"\n(It occurs in chest imaging reports such as \"Bilateral \
                     pulmonary infection, two infected areas, middle left lung and lower right \
                     lung.\")"
                )},
            ],
        })
        .to_string();
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(k) = &self.api_key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        let resp = req.send(body).map_err(|e| self.transport_failure(e))?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .map_err(|e| self.transport_failure(e))?;
        if !(200..300).contains(&status) {
            return Err(Failure {
                retry: status == 429 || status >= 500,
                message: format!(
                    "HTTP {status} from {}: {}",
                    self.url,
                    excerpt_or_empty(&text)
                ),
            });
        }
        parse_reply(&text).map_err(|message| Failure {
            retry: false,
            message,
        })
    }

    fn transport_failure(&self, e: ureq::Error) -> Failure {
        let message = match &e {
            ureq::Error::Timeout(_) => {
                format!("no answer from {} within {} s", self.url, self.timeout_secs)
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                format!(
                    "cannot connect to {}: connection refused (is the server running?)",
                    self.url
                )
            }
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Io(_) => {
                format!("cannot connect to {}: {e}", self.url)
            }
            _ => format!("request to {} failed: {e}", self.url),
        };
        let retry = matches!(
            e,
            ureq::Error::Timeout(_)
                | ureq::Error::Io(_)
                | ureq::Error::ConnectionFailed
                | ureq::Error::HostNotFound
        );
        Failure { retry, message }
    }
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = if let Some(h) = host.strip_prefix('[') {
        h.split(']').next().unwrap_or(h)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// (xray, ct) from a chat-completions response body, or a message saying what is wrong.
fn parse_reply(body: &str) -> Result<(String, String), String> {
    let v: Value = serde_json::from_str(body).map_err(|e| {
        format!(
            "the endpoint's reply is not JSON ({e}); it starts: {}",
            excerpt_or_empty(body)
        )
    })?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| err.to_string(), str::to_string);
        return Err(format!(
            "the endpoint answered with an error: {}",
            excerpt(&msg)
        ));
    }
    let choice = v.get("choices").and_then(|c| c.get(0));
    let content = choice
        .and_then(|c| c.get("message"))
        .and_then(|m| m.get("content"));
    let content = match content {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Null) => "",
        _ => {
            return Err(format!(
                "malformed chat-completions reply (no choices[0].message.content); it starts: {}",
                excerpt_or_empty(body)
            ));
        }
    };
    if content.trim().is_empty() {
        let reason = choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str)
            .map(|r| format!(" (finish_reason: {r})"))
            .unwrap_or_default();
        return Err(format!("the model returned an empty answer{reason}"));
    }
    parse_answer(content)
}

/// (xray, ct) from the model's answer text.
fn parse_answer(content: &str) -> Result<(String, String), String> {
    let object = extract_json_object(content).ok_or_else(|| {
        format!(
            "the model's answer is not the requested JSON object {{\"xray\": …, \"ct\": …}}; \
             it starts: {}",
            excerpt(content)
        )
    })?;
    let v: Value = serde_json::from_str(object).map_err(|e| {
        format!(
            "the model's answer is not valid JSON ({e}); it starts: {}",
            excerpt(content)
        )
    })?;
    let Value::Object(map) = v else {
        return Err(format!(
            "the model's answer is not a JSON object; it starts: {}",
            excerpt(content)
        ));
    };
    let field = |want: &str| -> Result<String, String> {
        let found = map.iter().find(|(k, _)| {
            k.chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .eq_ignore_ascii_case(want)
        });
        match found {
            None => Err(format!(
                "the model's answer has no \"{want}\" field; it starts: {}",
                excerpt(content)
            )),
            Some((_, Value::String(s))) => {
                let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
                if s.is_empty() {
                    Err(format!("the model's answer has an empty \"{want}\" field"))
                } else if s.chars().count() > MAX_FIELD_CHARS {
                    Err(format!(
                        "the model's \"{want}\" answer is {} characters long (at most \
                         {MAX_FIELD_CHARS}: one or two sentences were asked for)",
                        s.chars().count()
                    ))
                } else {
                    Ok(s)
                }
            }
            Some((_, other)) => Err(format!(
                "the model's \"{want}\" field is not a string but {other}"
            )),
        }
    };
    Ok((field("xray")?, field("ct")?))
}

/// The JSON object inside an answer: drops `<think>…</think>`, code fences and text around
/// the outermost `{…}`.
fn extract_json_object(content: &str) -> Option<&str> {
    let mut s = content;
    if let Some(end) = s.rfind("</think>") {
        s = &s[end + "</think>".len()..];
    }
    let start = s.find('{')?;
    let end = s.rfind('}')?;
    (end > start).then(|| &s[start..=end])
}

fn excerpt(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = flat.chars().take(EXCERPT_CHARS).collect();
    if flat.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    format!("{out:?}")
}

fn excerpt_or_empty(s: &str) -> String {
    if s.trim().is_empty() {
        "(empty body)".to_string()
    } else {
        excerpt(s)
    }
}

/// One-line text safe inside a TOML comment.
fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn header(model: &str, endpoint: &str, date: &str) -> String {
    format!(
        "# Radiological knowledge passages for DATE (tgcnet), produced by `tgcnet knowledge generate`.\n\
         # model:    {}\n\
         # endpoint: {}\n\
         # date:     {date}\n\
         # Machine-generated by a language model: review every entry before training with it.\n\
         # Not medical advice. Aliases and classes are copied from the built-in knowledge file\n\
         # (knowledge/default.toml) where it has the term.\n",
        comment_safe(model),
        comment_safe(&public_endpoint(endpoint)),
    )
}

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Writes `text` to a temporary file next to `out`, syncs it and renames it over `out`.
fn write_atomic(out: &Path, text: &str) -> anyhow::Result<()> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| anyhow!("--out {}: not a file path", out.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow!(
            "--out {}: cannot write the file: {e}",
            out.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_or_without_v1() {
        let u = |e: &str| chat_completions_url(e).unwrap();
        assert_eq!(u("http://h:8000"), "http://h:8000/v1/chat/completions");
        assert_eq!(u("http://h:8000/"), "http://h:8000/v1/chat/completions");
        assert_eq!(u("http://h:8000/v1"), "http://h:8000/v1/chat/completions");
        assert_eq!(u("http://h:8000/v1/"), "http://h:8000/v1/chat/completions");
        assert_eq!(
            u("https://api.example.org/openai/v1"),
            "https://api.example.org/openai/v1/chat/completions"
        );
        assert_eq!(
            u("http://h/v1/chat/completions"),
            "http://h/v1/chat/completions"
        );
        assert_eq!(u("HTTP://h"), "http://h/v1/chat/completions");
        for bad in [
            "h:8000",
            "ftp://h",
            "http://",
            "http:///v1",
            "http://h/v1?x=1",
        ] {
            assert!(chat_completions_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_endpoint_has_no_credentials() {
        assert_eq!(
            public_endpoint("http://user:secret@h:1/v1?key=abc"),
            "http://h:1/v1"
        );
        let h = header("m\nx", "http://h/v1", "2024-01-02T03:04:05Z");
        assert!(h.contains("# model:    m x\n"), "{h}");
        assert!(h.lines().all(|l| l.starts_with('#')));
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("http://127.0.0.1:9/v1"));
        assert!(is_loopback("http://localhost/v1"));
        assert!(is_loopback("http://[::1]:8000/v1"));
        assert!(!is_loopback("http://10.0.0.1:8000/v1"));
        assert!(!is_loopback("https://api.example.org/v1"));
    }

    #[test]
    fn answers_are_tolerated() {
        let ok = ("X.".to_string(), "C.".to_string());
        for a in [
            r#"{"xray": "X.", "ct": "C."}"#,
            "```json\n{\"xray\": \"X.\", \"ct\": \"C.\"}\n```",
            "```\n{\"xray\": \"X.\",\n \"ct\": \"C.\"}\n```\n",
            "<think>{maybe} thinking</think>\nSure: {\"X-ray\": \"X.\", \"CT\": \"C.\"} Done.",
            "{\"xray\": \"  X.\\n \", \"ct\": \"C.\", \"extra\": 1}",
        ] {
            assert_eq!(parse_answer(a), Ok(ok.clone()), "{a}");
        }
        let err = |a: &str| parse_answer(a).unwrap_err();
        assert!(err("no json here").contains("not the requested JSON object"));
        assert!(err("{\"xray\": \"X\"").contains("not the requested JSON object"));
        assert!(err("{\"xray\": \"X\", ct: 1}").contains("not valid JSON"));
        assert!(err("{\"xray\": \"X\"}").contains("no \"ct\" field"));
        assert!(err("{\"xray\": \"\", \"ct\": \"C\"}").contains("empty \"xray\""));
        assert!(err("{\"xray\": 3, \"ct\": \"C\"}").contains("not a string"));
        let long = format!("{{\"xray\": \"{}\", \"ct\": \"C\"}}", "a ".repeat(800));
        assert!(err(&long).contains("characters long"));
    }

    #[test]
    fn replies_are_checked() {
        let wrap = |content: &str| {
            json!({"choices": [{"message": {"role": "assistant", "content": content},
                                "finish_reason": "stop"}]})
            .to_string()
        };
        assert_eq!(
            parse_reply(&wrap(r#"{"xray":"a","ct":"b"}"#)),
            Ok(("a".into(), "b".into()))
        );
        assert!(
            parse_reply(&wrap("  "))
                .unwrap_err()
                .contains("empty answer")
        );
        assert!(parse_reply("<html>").unwrap_err().contains("not JSON"));
        assert!(
            parse_reply("{}")
                .unwrap_err()
                .contains("no choices[0].message.content")
        );
        let e = json!({"error": {"message": "model not found"}}).to_string();
        assert!(parse_reply(&e).unwrap_err().contains("model not found"));
        let null = json!({"choices": [{"message": {"content": null}, "finish_reason": "length"}]});
        assert!(
            parse_reply(&null.to_string())
                .unwrap_err()
                .contains("empty answer (finish_reason: length)")
        );
    }

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(format_utc(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn excerpts_are_bounded() {
        let e = excerpt(&"x".repeat(10_000));
        assert!(e.chars().count() < EXCERPT_CHARS + 10);
        assert_eq!(excerpt_or_empty(" \n"), "(empty body)");
    }
}
