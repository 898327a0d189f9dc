//! Writing a knowledge file with a chat model (`tgcnet knowledge generate`), minus the HTTP transport:
//! the prompt and request body, the endpoint URL, reading an OpenAI-compatible chat-completions reply and
//! the model's `{"xray": …, "ct": …}` answer, and the entries and header of the file written.
//!
//! Every check returns a message meant for the user (the CLI adds the term and the exit code); nothing
//! here touches the network or the file system.

use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::knowledge::{KnowledgeBase, KnowledgeEntry};

/// Longest accepted `xray` or `ct` answer, in characters ("one or two sentences").
pub const MAX_FIELD_CHARS: usize = 1000;
/// Characters of a reply quoted in error messages.
const EXCERPT_CHARS: usize = 300;

/// The system message of every request.
pub const SYSTEM_PROMPT: &str = "You are a thoracic radiologist writing short reference \
descriptions for a model that segments lung lesions in chest X-rays and CT scans guided by \
the clinical report. For the term given by the user, answer with only a JSON object \
{\"xray\": \"...\", \"ct\": \"...\"}: \"xray\" is one or two sentences on how the term appears \
on a frontal chest X-ray, \"ct\" is one or two sentences on how it appears on chest CT. Use \
standard terminology (Fleischner Society glossary), be factual and concise (at most 40 words \
per field), and write no markdown and no text outside the JSON object.";

/// The user message asking about `term`.
pub fn user_prompt(term: &str) -> String {
    format!(
        "Term: \"{term}\"\n(It occurs in chest imaging reports such as \"Bilateral \
         pulmonary infection, two infected areas, middle left lung and lower right \
         lung.\")"
    )
}

/// The JSON body of the request for `term`: [`SYSTEM_PROMPT`], then [`user_prompt`].
pub fn request_body(model: &str, temperature: f64, term: &str) -> String {
    json!({
        "model": model,
        "temperature": temperature,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_prompt(term)},
        ],
    })
    .to_string()
}

/// `{base}/v1/chat/completions` from a user's endpoint: the server root (`http://localhost:8000`), the
/// API base with its trailing `/v1`, or the full `…/chat/completions` URL, which is used as is; a base
/// whose path ends in anything but `/v1` gets `/v1` appended. The error names the endpoint.
pub fn chat_completions_url(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim();
    let not_http = || format!("{e:?}: expected an http:// or https:// URL");
    let Some((scheme, rest)) = e.split_once("://") else {
        return Err(not_http());
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(not_http());
    }
    if rest.contains(['?', '#']) {
        return Err(format!(
            "{e:?}: a query string or fragment is not supported"
        ));
    }
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{e:?}: the URL has no host"));
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

/// The endpoint as the file's header names it: no credentials, no query.
pub fn public_endpoint(endpoint: &str) -> String {
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

/// Whether `url`'s host is this machine (`localhost` or a loopback address): such requests must not go
/// through a proxy from the environment.
pub fn is_loopback(url: &str) -> bool {
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

/// The error a server may report instead of an answer (read before the answer, whatever else the
/// reply holds).
#[derive(Deserialize)]
struct ErrorReply {
    /// Absent or `null` when there is no error.
    #[serde(default)]
    error: Option<ApiError>,
}

/// A server's error: its `message` when that is a string, else the whole value.
#[derive(Deserialize)]
#[serde(untagged)]
enum ApiError {
    WithMessage { message: String },
    Other(Value),
}

/// The answers of an OpenAI-compatible chat-completions reply; only the first is read (the others are
/// not even checked).
#[derive(Deserialize)]
struct ChoicesReply {
    #[serde(default)]
    choices: Vec<Value>,
}

/// The first answer.
#[derive(Deserialize)]
struct Choice {
    /// Read as [`ReplyMessage`] when it is an object.
    message: Option<Value>,
    /// Only a string is shown; anything else is ignored.
    #[serde(default)]
    finish_reason: Option<Value>,
}

#[derive(Deserialize)]
struct ReplyMessage {
    /// Outer `None`: the field is missing (a malformed reply); `Some(None)`: `null` (an empty answer).
    #[serde(default, deserialize_with = "present")]
    content: Option<Option<String>>,
}

/// Deserialises a field that is present (possibly `null`) as `Some`, so that a missing field stays `None`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// (xray, ct) from a chat-completions response body, or a message saying what is wrong.
pub fn parse_reply(body: &str) -> Result<(String, String), String> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        format!(
            "the endpoint's reply is not JSON ({e}); it starts: {}",
            excerpt_or_empty(body)
        )
    })?;
    // serde would also read a struct from a JSON array; a reply must be an object.
    let is_object = |v: &Value| v.is_object();
    if is_object(&value)
        && let Ok(ErrorReply { error: Some(err) }) = ErrorReply::deserialize(&value)
    {
        let msg = match err {
            ApiError::WithMessage { message } => message,
            ApiError::Other(v) => v.to_string(),
        };
        return Err(format!(
            "the endpoint answered with an error: {}",
            excerpt(&msg)
        ));
    }
    let malformed = || {
        format!(
            "malformed chat-completions reply (no choices[0].message.content); it starts: {}",
            excerpt_or_empty(body)
        )
    };
    let first = Some(&value)
        .filter(|v| is_object(v))
        .and_then(|v| ChoicesReply::deserialize(v).ok())
        .and_then(|r| r.choices.into_iter().next())
        .filter(is_object)
        .ok_or_else(malformed)?;
    let choice = Choice::deserialize(first).map_err(|_| malformed())?;
    let content = choice
        .message
        .filter(is_object)
        .and_then(|m| ReplyMessage::deserialize(m).ok())
        .and_then(|m| m.content)
        .ok_or_else(malformed)?
        .unwrap_or_default();
    if content.trim().is_empty() {
        let reason = choice
            .finish_reason
            .as_ref()
            .and_then(Value::as_str)
            .map(|r| format!(" (finish_reason: {r})"))
            .unwrap_or_default();
        return Err(format!("the model returned an empty answer{reason}"));
    }
    parse_answer(&content)
}

/// (xray, ct) from the model's answer text: the JSON object in it, with `xray` and `ct` fields (keys
/// compared on their letters and digits, any case: `X-ray` counts), each a non-empty string of at most
/// [`MAX_FIELD_CHARS`] characters, whitespace collapsed.
pub fn parse_answer(content: &str) -> Result<(String, String), String> {
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
    // Models spell the keys freely ("X-ray", "CT"), so they are matched loosely rather than by serde.
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
            Some((_, Value::String(s))) => answer_text(want, s),
            Some((_, other)) => Err(format!(
                "the model's \"{want}\" field is not a string but {other}"
            )),
        }
    };
    Ok((field("xray")?, field("ct")?))
}

/// One answer field, whitespace collapsed; empty or overlong text is an error.
fn answer_text(want: &str, s: &str) -> Result<String, String> {
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

/// The start of `s` on one line, quoted, for error messages.
pub fn excerpt(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = flat.chars().take(EXCERPT_CHARS).collect();
    if flat.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    format!("{out:?}")
}

/// [`excerpt`], or "(empty body)" for blank text.
pub fn excerpt_or_empty(s: &str) -> String {
    if s.trim().is_empty() {
        "(empty body)".to_string()
    } else {
        excerpt(s)
    }
}

/// An entry for `term` with the model's descriptions; aliases and class come from `defaults` (the
/// built-in file) when it has the term, else the term matches only itself.
pub fn entry_for(defaults: &KnowledgeBase, term: &str, xray: String, ct: String) -> KnowledgeEntry {
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

/// One-line text safe inside a TOML comment.
fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The comment block that opens a generated knowledge file: model, endpoint (without credentials),
/// date, and the warning that the text is machine-generated.
pub fn file_header(model: &str, endpoint: &str, date: &str) -> String {
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

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`. Written out (H. Hinnant's civil-from-days
/// algorithm) because no date crate is otherwise in the build for one timestamp.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
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
        let h = file_header("m\nx", "http://h/v1", "2024-01-02T03:04:05Z");
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

    /// The serde structs read replies as the JSON used to be walked by hand.
    #[test]
    fn reply_shapes() {
        let malformed = "no choices[0].message.content";
        assert!(parse_reply("[1]").unwrap_err().contains(malformed));
        let missing = json!({"choices": [{"message": {"role": "assistant"}}]}).to_string();
        assert!(parse_reply(&missing).unwrap_err().contains(malformed));
        let listed = json!({"choices": [[{"content": "x"}]]}).to_string();
        assert!(parse_reply(&listed).unwrap_err().contains(malformed));
        let e = json!({"error": {"code": 7}}).to_string();
        assert!(parse_reply(&e).unwrap_err().contains("code"));
        let answer = r#"{"xray":"a","ct":"b"}"#;
        let odd = json!({"choices": [{"message": {"content": answer}, "finish_reason": 3}, 5]});
        assert_eq!(parse_reply(&odd.to_string()), Ok(("a".into(), "b".into())));
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
