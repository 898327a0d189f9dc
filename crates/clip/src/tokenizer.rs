//! OpenAI CLIP's byte-level BPE tokenizer (`simple_tokenizer.py`), reproducing the ids of
//! `open_clip.tokenizer.SimpleTokenizer` (open_clip_torch 3.3.0, default `clean="lower"`) and the rows of
//! `open_clip.tokenize` exactly, including its text cleaning with ftfy 6.3.1 and Python's `html.unescape`.
//!
//! # Pipeline (as in open_clip)
//! 1. `basic_clean`: `ftfy.fix_text(text)`, then `html.unescape` twice, then `str.strip()`.
//! 2. `whitespace_clean`: `" ".join(text.split())` (Python's `str.isspace` set), then `.lower()` (Python's full
//!    lower-case mapping with the final-sigma rule, which is what `str::to_lowercase` implements).
//! 3. Pre-tokenisation with `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//!    (IGNORECASE, which here only matters for the literal alternatives and for U+0345, which then matches
//!    no alternative and is dropped; both reproduced). open_clip names its special tokens `<start_of_text>`/`<end_of_text>` (OpenAI's
//!    original uses `<|startoftext|>`/`<|endoftext|>`; the ids 49406/49407 are the same): a literal
//!    `<start_of_text>` in the text becomes id 49406, as in open_clip, while `<|startoftext|>` is ordinary text.
//! 4. Each piece is UTF-8 encoded, mapped through `bytes_to_unicode`, and merged with the 48,894 ranked BPE
//!    merges of `bpe_simple_vocab_16e6.txt.gz` (the last symbol carries `</w>`), with a cache.
//!
//! # ftfy 6.3.1 `fix_text` with its default `TextFixerConfig`: what is reproduced
//! The text is cut into lines (each ending with its `\n`; segments of at most 1,000,000 code points), each
//! fixed until it no longer changes by, in order:
//! - `unescape_html` ("auto": on until the first line containing `<`, then off for that line and all later
//!   ones): `&name;` from the full HTML5 table, ftfy's upper-case variants (`&EACUTE;` → `É`), numeric
//!   references through `html.unescape`.
//! - `fix_encoding`: the full mojibake fixer: the `BADNESS_RE` heuristic, the ten single-byte code pages
//!   ftfy tries (latin-1, sloppy windows-1252/1251/1250/1253/1254/1257, iso-8859-2, macroman, cp437),
//!   `restore_byte_a0`, `replace_lossy_sequences`, the `utf-8-variants` decoder (CESU-8 and Java's `C0 80`,
//!   including its quirks at a trailing newline), `decode_inconsistent_utf8` and the latin-1 → windows-1252
//!   and C1-control fallbacks. Python regexes are translated mechanically (`tokenizer/tables.rs`).
//! - `fix_c1_controls`, `fix_latin_ligatures`, `fix_character_width`, `uncurl_quotes` (on by default in
//!   ftfy 6: ‘ ’ ‚ ‛ ʼ → `'`, “ ” „ ‟ → `"`), `fix_line_breaks`, `remove_terminal_escapes`,
//!   `remove_control_chars`, NFC normalisation.
//!
//! # Unicode versions
//! CPython 3.11 has Unicode 14.0 (`str.lower`, `str.isspace`, `unicodedata`), the `regex` module that runs the
//! pre-tokenizer has newer tables, and so do Rust's standard library, `regex` and `unicode-normalization`.
//! Generated tables bridge the gaps that matter: the letters and numbers the `regex` module knows beyond
//! CPython's tables are added to the pre-tokenizer classes, and the characters only a newer Unicode
//! lower-cases are left alone by the lower-casing. With these, every code point (between two letters), the
//! fixtures and 150,000 random strings and mojibake give the same ids as Python (`--stress` of the fixture
//! script; Rust 1.95, `regex` 1.13, `unicode-normalization` 0.1.26).
//!
//! # Not reproduced
//! - `fix_surrogates`: a Rust `&str` cannot contain UTF-16 surrogates, so there is nothing to fix (and the
//!   decoders here, like Python's strict ones, never produce them).
//! - NFC of characters assigned after Unicode 14 (`unicode-normalization` may compose pairs that CPython 3.11
//!   leaves alone) and the final-sigma context around such characters.
//! - A decimal character reference with more than 4,300 digits makes Python's `int()` (and so open_clip)
//!   raise; here it becomes U+FFFD like any other out-of-range reference.
//! - Recursion (`decode_inconsistent_utf8` → `fix_encoding`, depth 16) and ftfy's "until nothing changes"
//!   loops (64 rounds) are bounded; ftfy's are not. Real text never comes close.
//!
//! Unlike Python's `bpe()`, long words (over 48 bytes) are merged with a priority queue in O(n log n) instead of
//! O(n²); the result is identical (the merge ranks are checked to allow it, else the plain loop is used).
//!
//! Token ids: 0..=255 the byte symbols, 256..=511 the byte symbols with `</w>`, then the merges, then
//! [`START_TOKEN`] = 49406 and [`END_TOKEN`] = 49407. [`Tokenizer::tokenize_padded`] pads with 0 like
//! `open_clip.tokenize`.
//!
//! # Where the parts live
//! - this module: the public [`Tokenizer`] (pre-tokenisation, special tokens, truncation and padding);
//! - `bpe`: the vocabulary built from the embedded merges file, the byte-level BPE merge and decoding;
//! - `clean`: open_clip's text cleaning (ftfy's `fix_text`, `html.unescape`, Python's string semantics);
//! - `tables`: data generated from ftfy, CPython and the `regex` module by
//!   `scripts/fixtures/make_tokenizer_fixture.py --rust-tables` (never edited by hand).
//!
//! ```no_run
//! # fn main() -> tgcnet_clip::Result<()> {
//! let tok = tgcnet_clip::Tokenizer::new()?;
//! let rows = tok.tokenize_padded(&["bilateral pulmonary infection."], 77)?; // one row of 77 ids
//! assert_eq!(rows[0][0], tgcnet_clip::tokenizer::START_TOKEN);
//! # Ok(())
//! # }
//! ```

mod bpe;
mod clean;
mod tables;

use regex::Regex;

use crate::error::{ClipError, Result};
use bpe::Bpe;
use clean::Cleaner;
use tables::{TOKEN_EXTRA_LETTERS, TOKEN_EXTRA_NUMBERS};

/// Id of `<start_of_text>` (OpenAI: `<|startoftext|>`).
pub const START_TOKEN: u32 = 49406;
/// Id of `<end_of_text>` (OpenAI: `<|endoftext|>`).
pub const END_TOKEN: u32 = 49407;
/// The context length of every CLIP text tower.
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;
/// Number of ids (49,408).
pub const VOCAB_SIZE: usize = 49408;

fn err(message: impl Into<String>) -> ClipError {
    ClipError::Tokenizer(message.into())
}

/// The CLIP BPE tokenizer. Cheap to share (`Send + Sync`); the BPE cache sits behind a mutex.
pub struct Tokenizer {
    bpe: Bpe,
    /// open_clip's pre-tokenizer ([`token_pattern`]).
    pattern: Regex,
    cleaner: Cleaner,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.bpe.vocab_size())
            .field("merges", &self.bpe.merge_count())
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer from the embedded merges file (decompressed once here).
    pub fn new() -> Result<Self> {
        let bpe = Bpe::new()?;
        let pattern =
            Regex::new(&token_pattern()).map_err(|e| err(format!("pre-tokenizer regex: {e}")))?;
        Ok(Tokenizer {
            bpe,
            pattern,
            cleaner: Cleaner::new()?,
        })
    }

    /// Number of ids (49,408).
    pub fn vocab_size(&self) -> usize {
        self.bpe.vocab_size()
    }

    /// The text as open_clip sees it before pre-tokenisation: `whitespace_clean(basic_clean(text)).lower()`.
    pub fn clean(&self, text: &str) -> String {
        self.cleaner.clean_lower(text)
    }

    /// BPE ids of `text` without start/end tokens: `SimpleTokenizer().encode(text)`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let cleaned = self.cleaner.clean_lower(text);
        let mut ids = Vec::new();
        for m in self.pattern.find_iter(&cleaned) {
            match m.as_str() {
                "<start_of_text>" => ids.push(START_TOKEN),
                "<end_of_text>" => ids.push(END_TOKEN),
                piece => self.bpe.encode_piece(piece, &mut ids),
            }
        }
        ids
    }

    /// `[START] + encode(text) + [END]`, unpadded. Longer than `context_length`: cut to `context_length` ids
    /// with [`END_TOKEN`] last (open_clip's truncation). `context_length` below 2 is an error (open_clip would
    /// return `[END]` for 1 and silently use 77 for 0).
    pub fn tokenize(&self, text: &str, context_length: usize) -> Result<Vec<u32>> {
        check_context_length(context_length)?;
        let mut ids = Vec::with_capacity(context_length.min(256));
        ids.push(START_TOKEN);
        ids.extend(self.encode(text));
        ids.push(END_TOKEN);
        if ids.len() > context_length {
            ids.truncate(context_length);
            if let Some(last) = ids.last_mut() {
                *last = END_TOKEN;
            }
        }
        Ok(ids)
    }

    /// `open_clip.tokenize(texts, context_length)`: one row of exactly `context_length` ids per text,
    /// zero-padded (build a `[texts.len(), context_length]` int tensor from it).
    pub fn tokenize_padded(&self, texts: &[&str], context_length: usize) -> Result<Vec<Vec<u32>>> {
        texts
            .iter()
            .map(|t| {
                let mut ids = self.tokenize(t, context_length)?;
                ids.resize(context_length, 0);
                Ok(ids)
            })
            .collect()
    }

    /// [`Tokenizer::tokenize_padded`] flattened row-major (length `texts.len() * context_length`).
    pub fn tokenize_padded_flat(&self, texts: &[&str], context_length: usize) -> Result<Vec<u32>> {
        Ok(self.tokenize_padded(texts, context_length)?.concat())
    }

    /// `SimpleTokenizer.decode`: ids back to text (`</w>` → space, invalid UTF-8 → U+FFFD). Ids outside the
    /// vocabulary are skipped (Python raises `KeyError`).
    pub fn decode(&self, ids: &[u32]) -> String {
        self.bpe.decode(ids)
    }
}

/// open_clip's pre-tokenizer regex in Rust syntax. The Python `regex` module knows letters and numbers that
/// Rust's tables may not (generated `TOKEN_EXTRA_*`). Its IGNORECASE matters only for the literal
/// alternatives (`'ſ` matches `'s`); on the classes it only makes U+0345 COMBINING GREEK YPOGEGRAMMENI match
/// neither `[\p{L}]` nor `[^\s\p{L}\p{N}]`, so Python drops that character, and so does this pattern.
fn token_pattern() -> String {
    format!(
        r"(?i:<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d)|[\p{{L}}{l}--\x{{345}}]+|[\p{{N}}{n}]|[^\s\p{{L}}\p{{N}}{l}{n}\x{{345}}]+",
        l = TOKEN_EXTRA_LETTERS,
        n = TOKEN_EXTRA_NUMBERS,
    )
}

fn check_context_length(context_length: usize) -> Result<()> {
    if context_length < 2 {
        return Err(err(format!(
            "context_length must be at least 2 (room for the start and end tokens), got {context_length}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> Tokenizer {
        match Tokenizer::new() {
            Ok(t) => t,
            Err(e) => panic!("tokenizer: {e}"),
        }
    }

    #[test]
    fn known_ids() {
        let t = tok();
        // open_clip.tokenizer.SimpleTokenizer().encode(...)
        assert_eq!(
            t.encode("a photo of a cat"),
            vec![320, 1125, 539, 320, 2368]
        );
        assert_eq!(t.encode(""), Vec::<u32>::new());
        assert_eq!(t.vocab_size(), VOCAB_SIZE);
        let ids = t.tokenize("a photo of a cat", 77).unwrap_or_default();
        assert_eq!(ids, vec![START_TOKEN, 320, 1125, 539, 320, 2368, END_TOKEN]);
    }

    #[test]
    fn truncation_and_padding() {
        let t = tok();
        let long = "a photo of ".repeat(30);
        let ids = t.tokenize(&long, 10).unwrap_or_default();
        assert_eq!(ids.len(), 10);
        assert_eq!(ids[0], START_TOKEN);
        assert_eq!(ids[9], END_TOKEN);
        assert!(t.tokenize("x", 1).is_err());
        assert!(t.tokenize("x", 0).is_err());
        assert_eq!(
            t.tokenize("", 2).unwrap_or_default(),
            vec![START_TOKEN, END_TOKEN]
        );
        let rows = t.tokenize_padded(&["a cat", ""], 8).unwrap_or_default();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.len() == 8));
        assert_eq!(rows[1], vec![START_TOKEN, END_TOKEN, 0, 0, 0, 0, 0, 0]);
        let flat = t
            .tokenize_padded_flat(&["a cat", ""], 8)
            .unwrap_or_default();
        assert_eq!(flat, rows.concat());
    }

    #[test]
    fn decode_round_trip() {
        let t = tok();
        assert_eq!(
            t.decode(&t.encode("A photo of a cat!")),
            "a photo of a cat ! "
        );
        assert_eq!(t.decode(&t.encode("café 😀")), "café 😀 ");
    }

    #[test]
    fn no_panic_on_odd_input() {
        let t = tok();
        for s in [
            "\u{0}",
            "&#99999999999999999999999999;",
            "\u{10FFFF}",
            "<start_of_text>",
            "Ã",
            "\u{ed}\u{a0}",
        ] {
            let _ = t.encode(s);
        }
    }
}
