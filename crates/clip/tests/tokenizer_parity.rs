//! Exact parity of the Rust CLIP tokenizer with `open_clip.tokenize` (open_clip_torch 3.3.0, ftfy 6.3.1).
//!
//! The fixtures are written by `scripts/fixtures/make_tokenizer_fixture.py`: `captions.json` holds every
//! distinct caption of the QaTa-COV19 and MosMedData+ annotations, `hard.json` the hand-picked difficult
//! strings (Unicode, HTML entities, mojibake, long text, ...) plus seeded random ones. Each entry's `ids` is the
//! unpadded open_clip row at its `context_length`.
//!
//! Set `TGCNET_TOKENIZER_STRESS=/path/to/stress.json` (written by the script's `--stress`) to also check a
//! large uncommitted set.

use serde::Deserialize;
use tgcnet_clip::Tokenizer;

#[derive(Deserialize)]
struct Entry {
    text: String,
    context_length: usize,
    ids: Vec<u32>,
}

fn load(json: &str) -> Vec<Entry> {
    match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => panic!("bad fixture JSON: {e}"),
    }
}

fn tokenizer() -> Tokenizer {
    match Tokenizer::new() {
        Ok(t) => t,
        Err(e) => panic!("Tokenizer::new failed: {e}"),
    }
}

/// Checks every entry; panics listing the first mismatches.
fn check(name: &str, entries: &[Entry], tok: &Tokenizer) {
    assert!(!entries.is_empty(), "{name}: no entries");
    let mut failures = Vec::new();
    for e in entries {
        let got = match tok.tokenize(&e.text, e.context_length) {
            Ok(ids) => ids,
            Err(err) => panic!("{name}: tokenize({:?}) failed: {err}", e.text),
        };
        if got != e.ids {
            failures.push(format!(
                "text {:?} (context_length {}):\n  python {:?}\n  rust   {:?}\n  cleaned {:?}",
                e.text,
                e.context_length,
                e.ids,
                got,
                tok.clean(&e.text)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} entries differ; first ones:\n{}",
        failures.len(),
        entries.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn captions_match_open_clip() {
    let entries = load(include_str!("fixtures/tokenizer/captions.json"));
    check("captions.json", &entries, &tokenizer());
}

#[test]
fn hard_strings_match_open_clip() {
    let entries = load(include_str!("fixtures/tokenizer/hard.json"));
    assert!(entries.iter().any(|e| e.context_length == 10));
    check("hard.json", &entries, &tokenizer());
}

#[test]
fn padded_rows_match_fixture() {
    let entries = load(include_str!("fixtures/tokenizer/captions.json"));
    let tok = tokenizer();
    let texts: Vec<&str> = entries.iter().take(16).map(|e| e.text.as_str()).collect();
    let rows = match tok.tokenize_padded(&texts, 77) {
        Ok(r) => r,
        Err(e) => panic!("tokenize_padded failed: {e}"),
    };
    assert_eq!(rows.len(), texts.len());
    for (row, e) in rows.iter().zip(&entries) {
        assert_eq!(row.len(), 77);
        assert_eq!(&row[..e.ids.len()], &e.ids[..]);
        assert!(row[e.ids.len()..].iter().all(|&v| v == 0));
    }
}

#[test]
fn stress_set_matches_open_clip() {
    let Ok(path) = std::env::var("TGCNET_TOKENIZER_STRESS") else {
        return;
    };
    let json = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => panic!("{path}: {e}"),
    };
    check(&path, &load(&json), &tokenizer());
}
