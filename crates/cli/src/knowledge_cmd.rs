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
//!
//! This file is the command and its HTTP client (ureq); the prompt, the endpoint rules, reading the
//! reply and the file's header are `tgcnet_model::knowledge_gen`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use tgcnet_model::knowledge::{KnowledgeBase, KnowledgeEntry};
use tgcnet_model::knowledge_gen::{
    chat_completions_url, entry_for, excerpt_or_empty, file_header, is_loopback, parse_reply,
    request_body, utc_now,
};

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
    let url = chat_completions_url(&a.endpoint).map_err(|m| anyhow!("--endpoint {m}"))?;
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
        file_header(&a.model, &a.endpoint, &utc_now()),
        kb.to_toml()?
    );
    // The file must read back exactly as validated.
    KnowledgeBase::from_toml_str(&text, &out_name)
        .context("internal error: the generated knowledge file does not parse back")?;
    write_atomic(&a.out, &text)?;
    eprintln!("wrote {} passages to {out_name}", kb.len());
    Ok(0)
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
        let body = request_body(&self.model, self.temperature, term);
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

/// The knowledge file through the workspace's one atomic write, with errors that name the option.
fn write_atomic(out: &Path, text: &str) -> anyhow::Result<()> {
    if out.file_name().is_none() {
        return Err(anyhow!("--out {}: not a file path", out.display()));
    }
    tgcnet_io::write_atomic(out, text.as_bytes()).map_err(|e| {
        // The OS message alone: the option already names the file.
        let reason = match e {
            tgcnet_io::IoError::Io { error, .. } => error.to_string(),
            other => other.to_string(),
        };
        anyhow!("--out {}: cannot write the file: {reason}", out.display())
    })
}
