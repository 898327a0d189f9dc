//! open_clip's text cleaning: `whitespace_clean(basic_clean(text)).lower()`, i.e. ftfy 6.3.1's `fix_text`,
//! Python's `html.unescape` (twice) and CPython 3.11's `str.split`/`str.lower`. What is and is not
//! reproduced is listed in the parent module's documentation.

use std::collections::HashMap;

use regex::Regex;
use regex::bytes::Regex as BytesRegex;
use unicode_normalization::UnicodeNormalization;

use super::err;
use super::tables::{
    ALTERED_UTF8_RE, ANSI_RE, BADNESS_RE, CHARMAPS, HTML_CHARREF_RE, HTML_ENTITY_RE,
    HTML5_ENTITIES, LOSSY_UTF8_RE, LOWERCASE_KEEP, UTF8_CONTINUATION, UTF8_CONTINUATION_STRICT,
    UTF8_FIRST_OF_2, UTF8_FIRST_OF_3, UTF8_FIRST_OF_4,
};
use crate::error::Result;

/// Bound on ftfy's "repeat until nothing changes" loops.
const MAX_FIX_ROUNDS: usize = 64;
/// Bound on the recursion of ftfy's `decode_inconsistent_utf8` → `fix_encoding`.
const MAX_FIX_DEPTH: usize = 16;
/// ftfy's `max_decode_length`.
const MAX_SEGMENT_CHARS: usize = 1_000_000;

// ----------------------------------------------------------------------------------------------------------
// Python string helpers
// ----------------------------------------------------------------------------------------------------------

/// Python's `str.isspace`.
fn py_isspace(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\u{1C}'..='\u{20}'
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// Python 3.11's `str.lower`: full lower-case mapping with the final-sigma rule, except for the characters
/// that only a newer Unicode than CPython's 14.0 lower-cases (kept as they are).
fn py_lower(text: &str) -> String {
    let keep = |c: char| in_ranges(LOWERCASE_KEEP, c);
    if !text.chars().any(keep) {
        return text.to_lowercase();
    }
    // Split around the kept characters; for CPython they are unassigned, hence neither cased nor
    // case-ignorable, so they also end the final-sigma context like a segment boundary does.
    let mut out = String::with_capacity(text.len());
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if keep(c) {
            out.push_str(&text[start..i].to_lowercase());
            out.push(c);
            start = i + c.len_utf8();
        }
    }
    out.push_str(&text[start..].to_lowercase());
    out
}

/// Python's `" ".join(text.split())`.
fn py_split_join(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(py_isspace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

// ----------------------------------------------------------------------------------------------------------
// Text cleaning: ftfy.fix_text + html.unescape
// ----------------------------------------------------------------------------------------------------------

/// One of ftfy's single-byte code pages.
struct Charmap {
    name: &'static str,
    /// Characters of bytes 0x80..=0xFF.
    high: [char; 128],
    /// Character of byte 0x1A (U+001A, or U+FFFD in the "sloppy" codecs).
    sub: char,
    /// Inverse of `high` (plus `sub`).
    encode: HashMap<char, u8>,
}

impl Charmap {
    fn new(name: &'static str, sub: char, chars: &str) -> Result<Self> {
        let v: Vec<char> = chars.chars().collect();
        let high: [char; 128] = v
            .try_into()
            .map_err(|_| err(format!("code page {name}: expected 128 characters")))?;
        let mut encode: HashMap<char, u8> = HashMap::with_capacity(129);
        for (i, &c) in high.iter().enumerate() {
            encode.insert(c, 0x80 + i as u8);
        }
        encode.insert(sub, 0x1A);
        Ok(Charmap {
            name,
            high,
            sub,
            encode,
        })
    }

    /// `chardata.possible_encoding(text, name)`.
    fn possible(&self, text: &str) -> bool {
        text.chars()
            .all(|c| (c < '\u{80}' && c != '\u{1A}') || self.encode.contains_key(&c))
    }

    /// `text.encode(name)`; only call when `possible`.
    fn encode(&self, text: &str) -> Vec<u8> {
        text.chars()
            .map(|c| {
                if c < '\u{80}' && c != '\u{1A}' {
                    c as u8
                } else {
                    self.encode.get(&c).copied().unwrap_or(b'?')
                }
            })
            .collect()
    }

    fn decode_byte(&self, b: u8) -> char {
        match b {
            0x1A => self.sub,
            0x80..=0xFF => self.high[(b - 0x80) as usize],
            _ => char::from(b),
        }
    }
}

fn parse_entities(table: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for entry in table.split_whitespace() {
        let (name, hex) = entry
            .split_once('=')
            .ok_or_else(|| err(format!("bad entity table entry {entry:?}")))?;
        let mut value = String::new();
        for h in hex.split('+') {
            let c = u32::from_str_radix(h, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| err(format!("bad entity table entry {entry:?}")))?;
            value.push(c);
        }
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

fn compile(name: &str, rx: &str) -> Result<Regex> {
    Regex::new(rx).map_err(|e| err(format!("regex {name}: {e}")))
}

fn compile_bytes(name: &str, rx: &str) -> Result<BytesRegex> {
    BytesRegex::new(rx).map_err(|e| err(format!("regex {name}: {e}")))
}

/// open_clip's text cleaning, with its tables and regexes compiled once.
pub(super) struct Cleaner {
    /// Python's `html.entities.html5`.
    html5: HashMap<String, String>,
    /// ftfy's `chardata.HTML_ENTITIES` without the leading `&`.
    ftfy_entities: HashMap<String, String>,
    html_charref: Regex,
    ftfy_entity: Regex,
    badness: Regex,
    ansi: Regex,
    altered_utf8: BytesRegex,
    lossy_utf8: BytesRegex,
    charmaps: Vec<Charmap>,
    width_map: HashMap<char, String>,
}

impl Cleaner {
    pub(super) fn new() -> Result<Self> {
        let html5 = parse_entities(HTML5_ENTITIES)?;
        let mut charmaps = Vec::with_capacity(CHARMAPS.len());
        for (name, sub, chars) in CHARMAPS {
            charmaps.push(Charmap::new(name, sub, chars)?);
        }
        if charmaps.first().map(|c| c.name) != Some("latin-1")
            || charmaps.get(1).map(|c| c.name) != Some("sloppy-windows-1252")
        {
            return Err(err("code page table out of order"));
        }
        let mut width_map = HashMap::new();
        width_map.insert('\u{3000}', " ".to_string());
        for cp in 0xFF01u32..0xFFF0 {
            if let Some(c) = char::from_u32(cp) {
                let alt: String = std::iter::once(c).nfkc().collect();
                if alt.chars().ne(std::iter::once(c)) {
                    width_map.insert(c, alt);
                }
            }
        }
        let mut cleaner = Cleaner {
            html5,
            ftfy_entities: HashMap::new(),
            html_charref: compile("HTML_CHARREF_RE", HTML_CHARREF_RE)?,
            ftfy_entity: compile("HTML_ENTITY_RE", HTML_ENTITY_RE)?,
            badness: compile("BADNESS_RE", BADNESS_RE)?,
            ansi: compile("ANSI_RE", ANSI_RE)?,
            altered_utf8: compile_bytes("ALTERED_UTF8_RE", ALTERED_UTF8_RE)?,
            lossy_utf8: compile_bytes("LOSSY_UTF8_RE", LOSSY_UTF8_RE)?,
            charmaps,
            width_map,
        };
        cleaner.ftfy_entities = cleaner.build_ftfy_entities();
        Ok(cleaner)
    }

    /// ftfy's `_build_html_entities`: every HTML5 name ending in `;`, plus the upper-cased form of the
    /// lower-case ones when `html.unescape` leaves that form alone.
    fn build_ftfy_entities(&self) -> HashMap<String, String> {
        let mut out = HashMap::with_capacity(self.html5.len() * 2);
        for (name, value) in &self.html5 {
            if !name.ends_with(';') {
                continue;
            }
            out.insert(name.clone(), value.clone());
            if !name.chars().any(|c| c.is_ascii_uppercase()) {
                let upper = name.to_ascii_uppercase();
                let entity = format!("&{upper}");
                if self.html_unescape(&entity) == entity {
                    out.insert(upper, value.to_uppercase());
                }
            }
        }
        out
    }

    /// `whitespace_clean(basic_clean(text)).lower()`.
    pub(super) fn clean_lower(&self, text: &str) -> String {
        let fixed = self.fix_text(text);
        let once = self.html_unescape(&fixed);
        let twice = self.html_unescape(&once);
        py_lower(&py_split_join(&twice))
    }

    // ---- html.unescape ----

    /// Python's `html.unescape`.
    fn html_unescape(&self, s: &str) -> String {
        if !s.contains('&') {
            return s.to_string();
        }
        self.html_charref
            .replace_all(s, |caps: &regex::Captures<'_>| {
                let whole = caps.get(0).map_or("", |m| m.as_str());
                self.replace_charref(&whole[1..])
            })
            .into_owned()
    }

    /// `html._replace_charref` for the match without its `&`.
    fn replace_charref(&self, s: &str) -> String {
        if let Some(num) = s.strip_prefix('#') {
            let num = num.trim_end_matches(';');
            let value = if let Some(hex) = num.strip_prefix(['x', 'X']) {
                parse_saturating(hex, 16)
            } else {
                parse_saturating(num, 10)
            };
            return numeric_charref(value, &self.charmaps[1]);
        }
        if let Some(v) = self.html5.get(s) {
            return v.clone();
        }
        // The longest prefix (at least 2 characters) that is an entity name.
        let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
        for x in (2..bounds.len()).rev() {
            let (head, tail) = s.split_at(bounds[x]);
            if let Some(v) = self.html5.get(head) {
                return format!("{v}{tail}");
            }
        }
        format!("&{s}")
    }

    // ---- ftfy.fix_text ----

    fn fix_text(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut unescape = true;
        let mut rest = text;
        while !rest.is_empty() {
            let mut end = rest.find('\n').map_or(rest.len(), |i| i + 1);
            if let Some((i, _)) = rest[..end].char_indices().nth(MAX_SEGMENT_CHARS) {
                end = i;
            }
            let (segment, tail) = rest.split_at(end);
            if unescape && segment.contains('<') {
                unescape = false;
            }
            out.push_str(&self.fix_segment(segment, unescape));
            rest = tail;
        }
        out
    }

    /// `fix_and_explain` for one segment.
    fn fix_segment(&self, segment: &str, unescape: bool) -> String {
        let mut text = segment.to_string();
        for _ in 0..MAX_FIX_ROUNDS {
            let orig = text.clone();
            if unescape {
                text = self.ftfy_unescape_html(&text);
            }
            text = self.fix_encoding(&text, 0);
            text = self.fix_c1_controls(&text);
            text = fix_latin_ligatures(&text);
            text = self.fix_character_width(&text);
            text = uncurl_quotes(&text);
            text = fix_line_breaks(&text);
            text = self.ansi.replace_all(&text, "").into_owned();
            text = remove_control_chars(&text);
            text = text.nfc().collect();
            if text == orig {
                break;
            }
        }
        text
    }

    /// ftfy's `unescape_html`.
    fn ftfy_unescape_html(&self, text: &str) -> String {
        if !text.contains('&') {
            return text.to_string();
        }
        self.ftfy_entity
            .replace_all(text, |caps: &regex::Captures<'_>| {
                let m = caps.get(0).map_or("", |m| m.as_str());
                if let Some(v) = self.ftfy_entities.get(&m[1..]) {
                    v.clone()
                } else if m.starts_with("&#") {
                    let u = self.html_unescape(m);
                    if u.contains(';') { m.to_string() } else { u }
                } else {
                    m.to_string()
                }
            })
            .into_owned()
    }

    fn is_bad(&self, text: &str) -> bool {
        self.badness.is_match(text)
    }

    /// ftfy's `fix_encoding`.
    fn fix_encoding(&self, text: &str, depth: usize) -> String {
        let mut text = text.to_string();
        for _ in 0..MAX_FIX_ROUNDS {
            let next = self.fix_encoding_one_step(&text, depth);
            if next == text {
                break;
            }
            text = next;
        }
        text
    }

    /// ftfy's `_fix_encoding_one_step_and_explain`.
    fn fix_encoding_one_step(&self, text: &str, depth: usize) -> String {
        if text.is_empty() || text.is_ascii() || !self.is_bad(text) {
            return text.to_string();
        }
        let mut latin1_possible = false;
        for cm in &self.charmaps {
            if !cm.possible(text) {
                continue;
            }
            if cm.name == "latin-1" {
                latin1_possible = true;
            }
            let mut bytes = cm.encode(text);
            if cm.name != "macroman" && self.altered_utf8.is_match(&bytes) {
                bytes = self.restore_byte_a0(&bytes);
            }
            if cm.name.starts_with("sloppy") {
                bytes = self
                    .lossy_utf8
                    .replace_all(&bytes, "\u{FFFD}".as_bytes())
                    .into_owned();
            }
            let decoded = if bytes.contains(&0xED) || bytes.contains(&0xC0) {
                decode_utf8_variants(&bytes)
            } else {
                String::from_utf8(bytes).ok()
            };
            if let Some(fixed) = decoded {
                return fixed;
            }
        }
        if depth < MAX_FIX_DEPTH {
            let matches = utf8_mojibake_matches(text);
            if !matches.is_empty() {
                let fixed = self.decode_inconsistent_utf8(text, &matches, depth);
                if fixed != text {
                    return fixed;
                }
            }
        }
        // `"windows-1252" in possible_1byte_encodings` is never true in ftfy (the list holds
        // "sloppy-windows-1252"), so latin-1 text always gets this strict windows-1252 attempt.
        if latin1_possible {
            let cp1252 = &self.charmaps[1];
            let mut fixed = String::with_capacity(text.len());
            let mut ok = true;
            for c in text.chars() {
                let cp = c as u32;
                if (0x80..=0x9F).contains(&cp) {
                    if matches!(cp, 0x81 | 0x8D | 0x8F | 0x90 | 0x9D) {
                        ok = false;
                        break;
                    }
                    fixed.push(cp1252.decode_byte(cp as u8));
                } else {
                    fixed.push(c);
                }
            }
            if ok && fixed != text {
                return fixed;
            }
        }
        if text.chars().any(|c| ('\u{80}'..='\u{9F}').contains(&c)) {
            return self.fix_c1_controls(text);
        }
        text.to_string()
    }

    /// ftfy's `decode_inconsistent_utf8`, given the matches of `UTF8_DETECTOR_RE` in `text`.
    fn decode_inconsistent_utf8(
        &self,
        text: &str,
        matches: &[(usize, usize)],
        depth: usize,
    ) -> String {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for &(start, end) in matches {
            out.push_str(&text[last..start]);
            let sub = &text[start..end];
            if sub.len() < text.len() && self.is_bad(sub) {
                out.push_str(&self.fix_encoding(sub, depth + 1));
            } else {
                out.push_str(sub);
            }
            last = end;
        }
        out.push_str(&text[last..]);
        out
    }

    /// ftfy's `restore_byte_a0`.
    fn restore_byte_a0(&self, bytes: &[u8]) -> Vec<u8> {
        // A_GRAVE_WORD_RE = b"\xc3 (?! |quele|quela|quilo|s )" → b"\xc3\xa0 "
        let mut fixed = Vec::with_capacity(bytes.len() + 8);
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == 0xC3 && bytes.get(i + 1) == Some(&b' ') {
                let after = &bytes[i + 2..];
                let blocked = [&b" "[..], b"quele", b"quela", b"quilo", b"s "]
                    .iter()
                    .any(|p| after.starts_with(p));
                if !blocked {
                    fixed.extend_from_slice(b"\xC3\xA0 ");
                    i += 2;
                    continue;
                }
            }
            fixed.push(bytes[i]);
            i += 1;
        }
        self.altered_utf8
            .replace_all(&fixed, |caps: &regex::bytes::Captures<'_>| {
                caps.get(0).map_or_else(Vec::new, |m| {
                    m.as_bytes()
                        .iter()
                        .map(|&b| if b == b' ' { 0xA0 } else { b })
                        .collect()
                })
            })
            .into_owned()
    }

    /// ftfy's `fix_c1_controls`: U+0080..U+009F read as sloppy windows-1252.
    fn fix_c1_controls(&self, text: &str) -> String {
        let cp1252 = &self.charmaps[1];
        text.chars()
            .map(|c| {
                let cp = c as u32;
                if (0x80..=0x9F).contains(&cp) {
                    cp1252.decode_byte(cp as u8)
                } else {
                    c
                }
            })
            .collect()
    }

    fn fix_character_width(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match self.width_map.get(&c) {
                Some(s) => out.push_str(s),
                None => out.push(c),
            }
        }
        out
    }
}

/// Parses ASCII digits; `u64::MAX` stands for "too large for a code point".
fn parse_saturating(digits: &str, radix: u32) -> u64 {
    let mut v: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix).map_or(0, u64::from);
        v = v.saturating_mul(u64::from(radix)).saturating_add(d);
    }
    v
}

/// Numeric branch of `html._replace_charref`.
fn numeric_charref(num: u64, cp1252: &Charmap) -> String {
    match num {
        0 => "\u{FFFD}".to_string(),
        0x0D => "\r".to_string(),
        0x80..=0x9F => cp1252.decode_byte(num as u8).to_string(),
        0xD800..=0xDFFF => "\u{FFFD}".to_string(),
        n if n > 0x10FFFF => "\u{FFFD}".to_string(),
        n => {
            let n = n as u32;
            let invalid = matches!(n, 0x1..=0x8 | 0xB | 0xE..=0x1F | 0x7F..=0x9F | 0xFDD0..=0xFDEF)
                || (n & 0xFFFE) == 0xFFFE;
            if invalid {
                String::new()
            } else {
                char::from_u32(n).map_or_else(|| "\u{FFFD}".to_string(), |c| c.to_string())
            }
        }
    }
}

/// Is `c` in a sorted list of inclusive ranges?
fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let cp = c as u32;
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                std::cmp::Ordering::Less
            } else if lo > cp {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// The matches (byte ranges) of ftfy's `UTF8_DETECTOR_RE`, as `re.sub` finds them:
/// `(?<![STRICT])([FIRST_OF_2][CONT]|[FIRST_OF_3][CONT]{2}|[FIRST_OF_4][CONT]{3})+`. Like Python's
/// backtracking engine this tries each start in turn (lookbehind first), repeats greedily taking the first
/// alternative that matches at each step, and resumes after each match. Linear time.
fn utf8_mojibake_matches(text: &str) -> Vec<(usize, usize)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let behind_ok = start == 0 || !in_ranges(UTF8_CONTINUATION_STRICT, chars[start - 1].1);
        let mut end = start;
        if behind_ok {
            while let Some(n) = utf8_unit_at(&chars, end) {
                end += n;
            }
        }
        if end > start {
            out.push((
                chars[start].0,
                chars.get(end).map_or(text.len(), |&(i, _)| i),
            ));
            start = end;
        } else {
            start += 1;
        }
    }
    out
}

/// Length in characters of one `[FIRST_OF_n][CONT]{n-1}` unit at `i` (alternatives tried in order).
fn utf8_unit_at(chars: &[(usize, char)], i: usize) -> Option<usize> {
    let (_, first) = *chars.get(i)?;
    for (n, firsts) in [
        (2, UTF8_FIRST_OF_2),
        (3, UTF8_FIRST_OF_3),
        (4, UTF8_FIRST_OF_4),
    ] {
        if in_ranges(firsts, first)
            && (1..n).all(|k| {
                chars
                    .get(i + k)
                    .is_some_and(|&(_, c)| in_ranges(UTF8_CONTINUATION, c))
            })
        {
            return Some(n);
        }
    }
    None
}

/// ftfy's `utf-8-variants` decoder (strict): UTF-8 plus CESU-8 surrogate pairs and `C0 80` for U+0000.
/// Python's `$` also matches before a final `\n`, which the special-sequence patterns inherit.
fn decode_utf8_variants(input: &[u8]) -> Option<String> {
    let len = input.len();
    let at_end = |i: usize| i == len || (i + 1 == len && input[len - 1] == b'\n');
    // `b[i]` is in `lo..=hi`, or (the regex's `|$`) `i` is at the end.
    let class_or_end = |i: usize, lo: u8, hi: u8| -> Option<usize> {
        match input.get(i) {
            Some(&b) if (lo..=hi).contains(&b) => Some(i + 1),
            _ if at_end(i) => Some(i),
            _ => None,
        }
    };
    // SPECIAL_BYTES_RE = NULL_EXPR | CESU8_EXPR | SURROGATE_EXPR: does one match at `i`?
    let special_at = |i: usize| -> bool {
        match input[i] {
            0xC0 => class_or_end(i + 1, 0x80, 0x80).is_some(),
            0xED => class_or_end(i + 1, 0xA0, 0xBF)
                .and_then(|j| class_or_end(j, 0x80, 0xBF))
                .is_some(),
            _ => false,
        }
    };
    // CESU8_RE.match at `i` (anchored; needs six bytes to be consumed as a character).
    let cesu_at = |i: usize| -> bool {
        let mut j = i + 1;
        for (lo, hi) in [
            (0xA0, 0xAF),
            (0x80, 0xBF),
            (0xED, 0xED),
            (0xB0, 0xBF),
            (0x80, 0xBF),
        ] {
            match class_or_end(j, lo, hi) {
                Some(next) => j = next,
                None => return false,
            }
        }
        true
    };
    let mut out = String::with_capacity(len);
    let mut pos = 0;
    while pos < len {
        let Some(cut) = (pos..len).find(|&i| special_at(i)) else {
            out.push_str(std::str::from_utf8(&input[pos..]).ok()?);
            break;
        };
        if cut > pos {
            out.push_str(std::str::from_utf8(&input[pos..cut]).ok()?);
            pos = cut;
            continue;
        }
        if input[pos] == 0xC0 {
            if len - pos > 1 {
                out.push('\0');
                pos += 2;
                continue;
            }
            return None;
        }
        // 0xED followed by a surrogate-range byte (or the end)
        if len - pos < 6 || !cesu_at(pos) {
            return None;
        }
        let b = &input[pos..pos + 6];
        let cp = ((u32::from(b[1]) & 0x0F) << 16)
            + ((u32::from(b[2]) & 0x3F) << 10)
            + ((u32::from(b[4]) & 0x0F) << 6)
            + (u32::from(b[5]) & 0x3F)
            + 0x10000;
        out.push(char::from_u32(cp)?);
        pos += 6;
    }
    Some(out)
}

fn fix_latin_ligatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let rep = match c {
            'Ĳ' => "IJ",
            'ĳ' => "ij",
            'ŉ' => "ʼn",
            'Ǳ' => "DZ",
            'ǲ' => "Dz",
            'ǳ' => "dz",
            'Ǆ' => "DŽ",
            'ǅ' => "Dž",
            'ǆ' => "dž",
            'Ǉ' => "LJ",
            'ǈ' => "Lj",
            'ǉ' => "lj",
            'Ǌ' => "NJ",
            'ǋ' => "Nj",
            'ǌ' => "nj",
            'ﬀ' => "ff",
            'ﬁ' => "fi",
            'ﬂ' => "fl",
            'ﬃ' => "ffi",
            'ﬄ' => "ffl",
            'ﬅ' => "ſt",
            'ﬆ' => "st",
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(rep);
    }
    out
}

fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{2BC}' | '\u{2018}'..='\u{201B}' => '\'',
            '\u{201C}'..='\u{201F}' => '"',
            _ => c,
        })
        .collect()
}

fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

fn remove_control_chars(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            !matches!(
                c,
                '\u{0}'..='\u{8}'
                    | '\u{B}'
                    | '\u{E}'..='\u{1F}'
                    | '\u{7F}'
                    | '\u{206A}'..='\u{206F}'
                    | '\u{FEFF}'
                    | '\u{FFF9}'..='\u{FFFC}'
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::tables::{FTFY_UPPER_ENTITY_COUNT, FTFY_UPPER_ENTITY_DIGEST};

    fn cleaner() -> Cleaner {
        match Cleaner::new() {
            Ok(c) => c,
            Err(e) => panic!("cleaner: {e}"),
        }
    }

    #[test]
    fn cleaning_matches_python() {
        let c = cleaner();
        // Values from ftfy 6.3.1 + html.unescape + str.lower in CPython 3.11.
        let cases = [
            ("cafÃ©", "café"),
            ("\u{201c}hello\u{201d} \u{2018}x\u{2019}", "\"hello\" 'x'"),
            ("&amp;amp;amp;amp;", "&"),
            ("<&amp;amp;amp;", "<&amp;"),
            ("ＬＯＵＤ　ＮＯＩＳＥＳ", "loud noises"),
            ("\u{1b}[31mred\u{1b}[0m", "red"),
            ("ﬂuﬃeﬆ", "fluffiest"),
            ("P&EACUTE;REZ", "pérez"),
            ("ΟΔΟΣ", "οδος"),
            ("İ", "i\u{307}"),
            ("  a \t b\n\nc  ", "a b c"),
            ("&copy 2024 &copyright", "© 2024 ©right"),
            ("&#x80; &#150; &#0;", "€ – \u{fffd}"),
            ("cafe\u{301}", "café"),
            ("voilÃ le travail", "voilà le travail"),
        ];
        for (input, expected) in cases {
            assert_eq!(c.clean_lower(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn html_unescape_matches_python() {
        let c = cleaner();
        let cases = [
            (
                "&amp; &lt; &gt; &quot; &apos; &#39; &#x27;",
                "& < > \" ' ' '",
            ),
            ("&nbsp;|&nbsp|&NewLine;|&Tab;", "\u{a0}|\u{a0}|\n|\t"),
            ("&notin; &notit; &noti", "∉ ¬it; ¬i"),
            ("&unknown; &; &#; &#x;", "&unknown; &; &#; &#x;"),
            (
                "&#xD800; &#1114112; &#65534; &#1; &#13;",
                "\u{fffd} \u{fffd}   \r",
            ),
            (
                "&hellip;&mdash;&ndash;&lsquo;&rsquo;&ldquo;&rdquo;&euro;",
                "…—–‘’“”€",
            ),
            ("&EACUTE;", "&EACUTE;"),
        ];
        for (input, expected) in cases {
            assert_eq!(c.html_unescape(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn ftfy_upper_entities_match_python() {
        let c = cleaner();
        let mut extra: Vec<(&String, &String)> = c
            .ftfy_entities
            .iter()
            .filter(|(k, _)| !c.html5.contains_key(*k))
            .collect();
        extra.sort();
        assert_eq!(extra.len(), FTFY_UPPER_ENTITY_COUNT);
        let mut digest: u64 = 0;
        for (k, v) in extra {
            for ch in k
                .chars()
                .chain(std::iter::once('='))
                .chain(v.chars())
                .chain(std::iter::once(' '))
            {
                digest = digest.wrapping_mul(31).wrapping_add(ch as u64);
            }
        }
        assert_eq!(digest, FTFY_UPPER_ENTITY_DIGEST);
    }

    #[test]
    fn utf8_variants() {
        assert_eq!(decode_utf8_variants(b"a\xc0\x80b").as_deref(), Some("a\0b"));
        assert_eq!(
            decode_utf8_variants(b"\xed\xa0\xbd\xed\xb8\x80").as_deref(),
            Some("\u{1F600}")
        );
        assert_eq!(decode_utf8_variants(b"\xed\xa0\xbd"), None);
        assert_eq!(decode_utf8_variants(b"\xc0\n").as_deref(), Some("\0"));
        assert_eq!(decode_utf8_variants(b"\xc0x"), None);
    }
}
