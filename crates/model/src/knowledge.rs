//! Radiological knowledge passages for DATE (the Domain-Augmented Text Encoder).
//!
//! A knowledge file is TOML with one `[[entry]]` per term:
//!
//! ```toml
//! [[entry]]
//! term = "upper left lung"                        # canonical term, always matched
//! class = "zone"                                  # optional word class
//! aliases = ["left upper zone", "left upper lung zone"]   # optional, other surface forms
//! xray = "How it appears on a chest X-ray."
//! ct = "How it appears on chest CT."
//! xray_image = "..."        # optional: replaces `xray` for captions that name sides as seen on the image
//! ct_patient = "..."        # optional: replaces `ct` for captions that name the patient's sides
//! ```
//!
//! The `_image` / `_patient` variants exist for the terms whose meaning depends on the captions'
//! [`SideConvention`] ("left", "right lung", ...): a model trained on QaTa-COV19, whose captions name
//! sides as seen on the image, must not read "the patient's left, on the viewer's right" for "left".
//! Every entry becomes one [`Passage`] whose text is
//! `"<Term>. X-ray: <xray> CT: <ct>"` (with the variants of the knowledge base's convention); DATE encodes the passages once with the frozen CLIP
//! text encoder and lets the report tokens attend to the passages matched in the report
//! ([`KnowledgeBase::match_report`]).
//!
//! # Matching rule
//!
//! Steps 1 and 2 are the caption grammar of `tgcnet_data::caption::grammar`, which caption groups
//! (`CaptionMeta`) read zones through too, so both name the same zones for a caption.
//!
//! 1. **Words.** Text is lower-cased and cut into words of letters and digits. Hyphens,
//!    slashes, apostrophes and underscores separate words without ending a phrase
//!    (`ground-glass` = `ground glass`, `COVID-19` = `covid 19`). Commas and every other
//!    punctuation mark end a phrase: no alias is matched across them.
//! 2. **Coordinated lung zones are expanded** before matching, because the reports stack
//!    zone words in front of one side: a run of two or more of `upper`/`middle`/`lower`
//!    (optionally joined by `and`, `or` or commas) followed by `left`/`right` and a head word
//!    `lung`/`zone`/`lobe` (plural allowed) becomes one phrase per zone word, so
//!    `upper middle lower left lung` reads as `upper left lung`, `middle left lung`,
//!    `lower left lung`. The mirrored order `left upper and lower lobes` (side first) is
//!    expanded the same way (`left upper lobe`, `left lower lobe`).
//! 3. **Longest match first.** Every occurrence of every alias (the term itself is always an
//!    alias) is found as a whole-word sequence; occurrences are accepted from the longest
//!    (in words) to the shortest, left to right among equals, and an occurrence is dropped
//!    when it overlaps words already claimed by an accepted one. So in
//!    `middle left lung and lower right lung` the zone terms claim `left` and `right`, and the
//!    laterality terms `left`/`right` fire only where those words stand outside a longer
//!    matched phrase (e.g. `left-sided effusion`).
//! 4. The result is the sorted, deduplicated list of passage indices.
//!
//! Validation: a file must have at least one entry; every entry needs a non-empty `term`,
//! `xray` and `ct`; unknown fields, wrong types, duplicate terms and an alias claimed by two
//! different entries are errors naming the file and the entry.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use tgcnet_data::SideConvention;
use tgcnet_data::caption::grammar::{self, Token};

use crate::date::PassageModality;

/// The shipped knowledge file (`knowledge/default.toml` at the repository root).
pub const DEFAULT_KNOWLEDGE_TOML: &str = include_str!("../../../knowledge/default.toml");

/// Origin string used in errors about the shipped file.
pub const DEFAULT_ORIGIN: &str = "knowledge/default.toml (built in)";

const ENTRY_FIELDS: [&str; 9] = [
    "term",
    "class",
    "aliases",
    "xray",
    "ct",
    "xray_image",
    "ct_image",
    "xray_patient",
    "ct_patient",
];

/// One knowledge passage: the term and the text DATE encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// The clinical term, as the knowledge file writes it.
    pub term: String,
    /// `"<Term>. X-ray: <xray> CT: <ct>"`.
    pub text: String,
}

/// One entry of a knowledge file, as written in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnowledgeEntry {
    /// The clinical term, as matched in reports.
    pub term: String,
    /// Other surface forms matched in reports (the term itself is always matched).
    pub aliases: Vec<String>,
    /// Optional word class (`laterality`, `zone`, `count`, `finding`, ...).
    pub class: Option<String>,
    /// How the term appears on a chest X-ray (one or two sentences).
    pub xray: String,
    /// How the term appears on chest CT (one or two sentences).
    pub ct: String,
    /// `xray` and `ct` for captions that name sides as seen on the image (when they differ).
    pub image: Option<SideTexts>,
    /// `xray` and `ct` for captions that name the patient's sides (when they differ).
    pub patient: Option<SideTexts>,
}

/// Convention-specific replacements of an entry's `xray` / `ct` text (either may be absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideTexts {
    /// Replacement X-ray text.
    pub xray: Option<String>,
    /// Replacement CT text.
    pub ct: Option<String>,
}

impl KnowledgeEntry {
    /// The passage text DATE encodes for captions in `convention`: `"<Term>. X-ray: <xray> CT: <ct>"`
    /// (or only the part of `modality`), with the convention's variants where the entry has them.
    pub fn passage_text(&self, convention: SideConvention, modality: PassageModality) -> String {
        let texts = match convention {
            SideConvention::Image => self.image.as_ref(),
            SideConvention::Patient => self.patient.as_ref(),
        };
        let xray = texts.and_then(|t| t.xray.as_ref()).unwrap_or(&self.xray);
        let ct = texts.and_then(|t| t.ct.as_ref()).unwrap_or(&self.ct);
        let term = capitalize(self.term.trim());
        match modality {
            PassageModality::Both => {
                format!("{term}. X-ray: {} CT: {}", sentence(xray), sentence(ct))
            }
            PassageModality::Xray => format!("{term}. X-ray: {}", sentence(xray)),
            PassageModality::Ct => format!("{term}. CT: {}", sentence(ct)),
        }
    }
}

/// Errors reading or validating a knowledge file. Every variant names the file (`origin`)
/// and, where it is about one entry, the entry (`#index` and term).
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// The file could not be read.
    #[error("{origin}: cannot read the knowledge file: {error}")]
    Io {
        /// The knowledge file (its path, or [`DEFAULT_ORIGIN`]).
        origin: String,
        /// In the message, not the `source()`, so that a report of the chain names it once.
        error: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: not valid TOML: {message}")]
    Parse {
        /// The knowledge file (its path, or [`DEFAULT_ORIGIN`]).
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The TOML is not a list of `[[entry]]` tables.
    #[error("{origin}: {message}")]
    Layout {
        /// The knowledge file (its path, or [`DEFAULT_ORIGIN`]).
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The file has no entries.
    #[error("{origin}: the knowledge file has no [[entry]]")]
    Empty {
        /// The knowledge file (its path, or [`DEFAULT_ORIGIN`]).
        origin: String,
    },
    /// An entry has a field the format does not know.
    #[error("{origin}: {entry}: unknown field `{field}` (allowed: term, class, aliases, xray, ct)")]
    UnknownField {
        /// The knowledge file (its path, or [`DEFAULT_ORIGIN`]).
        origin: String,
        /// The entry, as `entry #N ("term")`.
        entry: String,
        /// The field's name.
        field: String,
    },
    /// An entry lacks a required field.
    #[error("{origin}: {entry}: missing field `{field}`")]
    MissingField {
        /// The knowledge file (its path, or [`DEFAULT_ORIGIN`]).
        origin: String,
        /// The entry, as `entry #N ("term")`.
        entry: String,
        /// The field's name.
        field: String,
    },
    /// A field has the wrong TOML type.
    #[error("{origin}: {entry}: field `{field}` must be {expected}")]
    WrongType {
        /// The knowledge file (its path, or [`DEFAULT_ORIGIN`]).
        origin: String,
        /// The entry, as `entry #N ("term")`.
        entry: String,
        /// The field's name.
        field: String,
        /// The type the field must have.
        expected: String,
    },
    /// A required text field is blank.
    #[error("{origin}: {entry}: field `{field}` is empty")]
    EmptyText {
        /// The knowledge file (its path, or [`DEFAULT_ORIGIN`]).
        origin: String,
        /// The entry, as `entry #N ("term")`.
        entry: String,
        /// The field's name.
        field: String,
    },
    /// An alias that could never match in a report (no words, or phrase-ending punctuation).
    #[error("{origin}: {entry}: alias {alias:?} {reason}")]
    BadAlias {
        /// The knowledge file (its path, or [`DEFAULT_ORIGIN`]).
        origin: String,
        /// The entry, as `entry #N ("term")`.
        entry: String,
        /// The alias as written.
        alias: String,
        /// Why it cannot be matched.
        reason: String,
    },
    /// Two entries define the same term.
    #[error("{origin}: {entry}: duplicate term {term:?} (first defined in {first})")]
    DuplicateTerm {
        /// The knowledge file (its path, or [`DEFAULT_ORIGIN`]).
        origin: String,
        /// The entry, as `entry #N ("term")`.
        entry: String,
        /// The repeated term.
        term: String,
        /// The entry that defines it first.
        first: String,
    },
    /// The knowledge base could not be written as TOML.
    #[error("{origin}: cannot write the knowledge file: {message}")]
    Serialize {
        /// The knowledge base's origin.
        origin: String,
        /// The serialiser's error.
        message: String,
    },
    /// An alias (or term) that two entries claim.
    #[error("{origin}: {entry}: alias {alias:?} is already used by {other}")]
    AmbiguousAlias {
        /// The knowledge file (its path, or [`DEFAULT_ORIGIN`]).
        origin: String,
        /// The entry, as `entry #N ("term")`.
        entry: String,
        /// The alias as written.
        alias: String,
        /// The entry that already uses it.
        other: String,
    },
}

/// The knowledge passages plus the compiled matcher.
#[derive(Debug, Clone)]
pub struct KnowledgeBase {
    /// One passage per entry, in file order.
    pub passages: Vec<Passage>,
    /// The entries as written (same order and length as `passages`).
    pub entries: Vec<KnowledgeEntry>,
    origin: String,
    /// The side convention the passages are written for.
    convention: SideConvention,
    /// Normalised alias word sequence -> passage index.
    matcher: HashMap<Vec<String>, usize>,
    max_alias_words: usize,
}

impl KnowledgeBase {
    /// The same base with its passages written for captions in `convention` and holding the
    /// descriptions of `modality` (a base is built for [`SideConvention::Image`], QaTa-COV19's
    /// convention, and both modalities until told otherwise).
    pub fn with_convention(
        mut self,
        convention: SideConvention,
        modality: PassageModality,
    ) -> Self {
        self.convention = convention;
        for (p, e) in self.passages.iter_mut().zip(&self.entries) {
            p.text = e.passage_text(convention, modality);
        }
        self
    }

    /// The side convention the passages are written for.
    pub fn convention(&self) -> SideConvention {
        self.convention
    }

    /// The shipped knowledge file, embedded at compile time.
    pub fn default_base() -> Result<Self, KnowledgeError> {
        Self::from_toml_str(DEFAULT_KNOWLEDGE_TOML, DEFAULT_ORIGIN)
    }

    /// Read and validate a knowledge file.
    pub fn from_toml_file(p: &Path) -> Result<Self, KnowledgeError> {
        let origin = p.display().to_string();
        let s = std::fs::read_to_string(p).map_err(|error| KnowledgeError::Io {
            origin: origin.clone(),
            error,
        })?;
        Self::from_toml_str(&s, &origin)
    }

    /// Parse and validate knowledge TOML; `origin` names the source in errors.
    pub fn from_toml_str(s: &str, origin: &str) -> Result<Self, KnowledgeError> {
        let table: toml::Table = s
            .parse()
            .map_err(|e: toml::de::Error| KnowledgeError::Parse {
                origin: origin.to_string(),
                message: e.to_string().trim().to_string(),
            })?;
        let layout = |message: String| KnowledgeError::Layout {
            origin: origin.to_string(),
            message,
        };
        if let Some(k) = table.keys().find(|k| k.as_str() != "entry") {
            return Err(layout(format!(
                "unknown top-level key `{k}` (a knowledge file holds only [[entry]] tables)"
            )));
        }
        let raw = match table.get("entry") {
            None => {
                return Err(KnowledgeError::Empty {
                    origin: origin.to_string(),
                });
            }
            Some(toml::Value::Array(a)) => a,
            Some(_) => {
                return Err(layout(
                    "`entry` must be an array of tables, written [[entry]]".to_string(),
                ));
            }
        };
        let mut entries = Vec::with_capacity(raw.len());
        for (i, v) in raw.iter().enumerate() {
            entries.push(entry_from_value(v, i, origin)?);
        }
        Self::from_entries(entries, origin)
    }

    /// Build and validate a knowledge base from entries (e.g. produced by an LLM).
    pub fn from_entries(
        entries: Vec<KnowledgeEntry>,
        origin: &str,
    ) -> Result<Self, KnowledgeError> {
        if entries.is_empty() {
            return Err(KnowledgeError::Empty {
                origin: origin.to_string(),
            });
        }
        let mut by_term: HashMap<String, usize> = HashMap::new();
        let mut matcher: HashMap<Vec<String>, usize> = HashMap::new();
        let mut max_alias_words = 0;
        for (i, e) in entries.iter().enumerate() {
            let label = entry_label(i, Some(&e.term));
            let variants = [("image", &e.image), ("patient", &e.patient)]
                .into_iter()
                .filter_map(|(name, t)| t.as_ref().map(|t| (name, t)))
                .flat_map(|(name, t)| {
                    [("xray", &t.xray), ("ct", &t.ct)]
                        .into_iter()
                        .filter_map(move |(f, x)| x.as_ref().map(|x| (format!("{f}_{name}"), x)))
                });
            let texts = [("term", &e.term), ("xray", &e.xray), ("ct", &e.ct)]
                .into_iter()
                .map(|(f, x)| (f.to_string(), x))
                .chain(variants);
            for (field, text) in texts {
                if text.trim().is_empty() {
                    return Err(KnowledgeError::EmptyText {
                        origin: origin.to_string(),
                        entry: label,
                        field,
                    });
                }
            }
            if matches!(&e.class, Some(c) if c.trim().is_empty()) {
                return Err(KnowledgeError::EmptyText {
                    origin: origin.to_string(),
                    entry: label,
                    field: "class".to_string(),
                });
            }
            let key = e.term.trim().to_lowercase();
            if let Some(&first) = by_term.get(&key) {
                return Err(KnowledgeError::DuplicateTerm {
                    origin: origin.to_string(),
                    entry: label,
                    term: e.term.clone(),
                    first: entry_label(first, Some(&entries[first].term)),
                });
            }
            by_term.insert(key, i);
            for alias in std::iter::once(&e.term).chain(e.aliases.iter()) {
                let words = alias_words(alias).map_err(|reason| KnowledgeError::BadAlias {
                    origin: origin.to_string(),
                    entry: label.clone(),
                    alias: alias.clone(),
                    reason,
                })?;
                match matcher.get(&words) {
                    Some(&j) if j == i => {}
                    Some(&j) => {
                        return Err(KnowledgeError::AmbiguousAlias {
                            origin: origin.to_string(),
                            entry: label,
                            alias: alias.clone(),
                            other: entry_label(j, Some(&entries[j].term)),
                        });
                    }
                    None => {
                        max_alias_words = max_alias_words.max(words.len());
                        matcher.insert(words, i);
                    }
                }
            }
        }
        let passages = entries
            .iter()
            .map(|e| Passage {
                term: e.term.clone(),
                text: e.passage_text(SideConvention::Image, PassageModality::Both),
            })
            .collect();
        Ok(Self {
            passages,
            entries,
            origin: origin.to_string(),
            convention: SideConvention::Image,
            matcher,
            max_alias_words,
        })
    }

    /// Where this knowledge base was read from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of passages.
    pub fn len(&self) -> usize {
        self.passages.len()
    }

    /// True when there are no passages (never the case for a validated base).
    pub fn is_empty(&self) -> bool {
        self.passages.is_empty()
    }

    /// Index of the passage whose term is `term` (case-insensitive).
    pub fn index_of(&self, term: &str) -> Option<usize> {
        let t = term.trim().to_lowercase();
        self.passages
            .iter()
            .position(|p| p.term.trim().to_lowercase() == t)
    }

    /// Indices of the passages whose term or an alias occurs in `caption`; see the module
    /// documentation for the rule. Sorted and deduplicated.
    pub fn match_report(&self, caption: &str) -> Vec<usize> {
        let toks = grammar::phrases(caption);
        let n = toks.len();
        let mut claimed = vec![false; n];
        let mut found = BTreeSet::new();
        for len in (1..=self.max_alias_words.min(n)).rev() {
            for start in 0..=(n - len) {
                let span = &toks[start..start + len];
                if claimed[start..start + len].iter().any(|&c| c) {
                    continue;
                }
                let words: Option<Vec<String>> =
                    span.iter().map(|t| t.word().map(str::to_string)).collect();
                let Some(words) = words else { continue };
                if let Some(&idx) = self.matcher.get(&words) {
                    claimed[start..start + len]
                        .iter_mut()
                        .for_each(|c| *c = true);
                    found.insert(idx);
                }
            }
        }
        found.into_iter().collect()
    }

    /// The terms matched in `caption` (convenience over [`Self::match_report`]).
    pub fn matched_terms(&self, caption: &str) -> Vec<&str> {
        self.match_report(caption)
            .into_iter()
            .map(|i| self.passages[i].term.as_str())
            .collect()
    }

    /// The knowledge base as a knowledge file (entries only, no header comment); it parses
    /// back to an equal knowledge base.
    pub fn to_toml(&self) -> Result<String, KnowledgeError> {
        let file = KnowledgeFile {
            entry: self.entries.iter().map(EntryRecord::of).collect(),
        };
        toml::to_string(&file).map_err(|e| KnowledgeError::Serialize {
            origin: self.origin.clone(),
            message: e.to_string(),
        })
    }
}

/// A knowledge file as [`KnowledgeBase::to_toml`] writes it: `[[entry]]` tables.
#[derive(serde::Serialize)]
struct KnowledgeFile<'a> {
    entry: Vec<EntryRecord<'a>>,
}

/// One `[[entry]]` table, its fields in the order of `knowledge/default.toml`; absent ones are left out.
#[derive(serde::Serialize)]
struct EntryRecord<'a> {
    term: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    aliases: &'a [String],
    xray: &'a str,
    ct: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    xray_image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ct_image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xray_patient: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ct_patient: Option<&'a str>,
}

impl<'a> EntryRecord<'a> {
    fn of(e: &'a KnowledgeEntry) -> Self {
        let variant = |texts: &'a Option<SideTexts>, pick: fn(&SideTexts) -> &Option<String>| {
            texts.as_ref().and_then(|t| pick(t).as_deref())
        };
        EntryRecord {
            term: &e.term,
            class: e.class.as_deref(),
            aliases: &e.aliases,
            xray: &e.xray,
            ct: &e.ct,
            xray_image: variant(&e.image, |t| &t.xray),
            ct_image: variant(&e.image, |t| &t.ct),
            xray_patient: variant(&e.patient, |t| &t.xray),
            ct_patient: variant(&e.patient, |t| &t.ct),
        }
    }
}

fn entry_label(i: usize, term: Option<&str>) -> String {
    match term {
        Some(t) if !t.trim().is_empty() => format!("entry #{} ({:?})", i + 1, t.trim()),
        _ => format!("entry #{}", i + 1),
    }
}

fn entry_from_value(
    v: &toml::Value,
    i: usize,
    origin: &str,
) -> Result<KnowledgeEntry, KnowledgeError> {
    let toml::Value::Table(t) = v else {
        return Err(KnowledgeError::Layout {
            origin: origin.to_string(),
            message: format!("{} is not a table", entry_label(i, None)),
        });
    };
    let term_hint = t.get("term").and_then(|v| v.as_str());
    let label = entry_label(i, term_hint);
    if let Some(k) = t.keys().find(|k| !ENTRY_FIELDS.contains(&k.as_str())) {
        return Err(KnowledgeError::UnknownField {
            origin: origin.to_string(),
            entry: label,
            field: k.clone(),
        });
    }
    let wrong = |field: &str, expected: &str| KnowledgeError::WrongType {
        origin: origin.to_string(),
        entry: label.clone(),
        field: field.to_string(),
        expected: expected.to_string(),
    };
    let string = |field: &str| -> Result<Option<String>, KnowledgeError> {
        match t.get(field) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong(field, "a string")),
        }
    };
    let required = |field: &str| -> Result<String, KnowledgeError> {
        string(field)?.ok_or_else(|| KnowledgeError::MissingField {
            origin: origin.to_string(),
            entry: label.clone(),
            field: field.to_string(),
        })
    };
    let aliases = match t.get("aliases") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => {
            let mut out = Vec::with_capacity(a.len());
            for x in a {
                match x {
                    toml::Value::String(s) => out.push(s.clone()),
                    _ => return Err(wrong("aliases", "an array of strings")),
                }
            }
            out
        }
        Some(_) => return Err(wrong("aliases", "an array of strings")),
    };
    let side_texts = |name: &str| -> Result<Option<SideTexts>, KnowledgeError> {
        let xray = string(&format!("xray_{name}"))?;
        let ct = string(&format!("ct_{name}"))?;
        Ok((xray.is_some() || ct.is_some()).then_some(SideTexts { xray, ct }))
    };
    Ok(KnowledgeEntry {
        term: required("term")?,
        aliases,
        class: string("class")?,
        xray: required("xray")?,
        ct: required("ct")?,
        image: side_texts("image")?,
        patient: side_texts("patient")?,
    })
}

/// The words of an alias, or why it cannot be matched.
fn alias_words(alias: &str) -> Result<Vec<String>, String> {
    let toks = grammar::tokenize(alias);
    let mut words = Vec::with_capacity(toks.len());
    for t in toks {
        match t {
            Token::Word(w) => words.push(w),
            _ => {
                return Err(
                    "contains punctuation that ends a phrase (, . ; : ...) and could never match"
                        .to_string(),
                );
            }
        }
    }
    if words.is_empty() {
        return Err("has no words".to_string());
    }
    Ok(words)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Trimmed, whitespace collapsed, ending with sentence punctuation.
fn sentence(s: &str) -> String {
    let mut t = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if !t.ends_with(['.', '!', '?']) {
        t.push('.');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kb() -> KnowledgeBase {
        KnowledgeBase::default_base().unwrap()
    }

    fn terms(kb: &KnowledgeBase, caption: &str) -> Vec<String> {
        let mut t: Vec<String> = kb
            .matched_terms(caption)
            .into_iter()
            .map(str::to_string)
            .collect();
        t.sort();
        t
    }

    fn sorted(v: &[&str]) -> Vec<String> {
        let mut t: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        t.sort();
        t
    }

    const SMALL: &str = r#"
[[entry]]
term = "left"
xray = "Left side."
ct = "Left side on CT."

[[entry]]
term = "upper left lung"
aliases = ["left upper zone"]
class = "zone"
xray = "Upper left."
ct = "Upper left on CT."
"#;

    #[test]
    fn default_file_parses() {
        let kb = kb();
        assert!(kb.len() >= 40, "only {} entries", kb.len());
        assert_eq!(kb.passages.len(), kb.entries.len());
        for p in &kb.passages {
            assert!(
                p.text.contains(" X-ray: ") && p.text.contains(" CT: "),
                "{}",
                p.text
            );
        }
        let p = &kb.passages[kb.index_of("upper left lung").unwrap()];
        assert!(p.text.starts_with("Upper left lung. X-ray: "), "{}", p.text);
    }

    #[test]
    fn default_file_covers_every_word_class() {
        let kb = kb();
        let required = [
            // laterality
            "left",
            "right",
            "unilateral",
            "bilateral",
            // the six zones and whole-lung phrases
            "upper left lung",
            "middle left lung",
            "lower left lung",
            "upper right lung",
            "middle right lung",
            "lower right lung",
            "all left lung",
            "all right lung",
            "left lung",
            "right lung",
            // counts
            "one infected area",
            "two infected areas",
            "three infected areas",
            "four infected areas",
            "five infected areas",
            "six infected areas",
            "seven infected areas",
            "eight infected areas",
            "nine infected areas",
            "no pulmonary infection",
            // infection
            "pulmonary infection",
            "infected area",
            // findings
            "ground-glass opacity",
            "consolidation",
            "crazy paving",
            "reticulation",
            "pleural effusion",
            "interstitial thickening",
            "interlobular septal thickening",
            "air bronchogram",
            "peripheral distribution",
            "subpleural",
        ];
        for t in required {
            assert!(kb.index_of(t).is_some(), "default knowledge lacks {t:?}");
        }
        let classes: BTreeSet<&str> = kb
            .entries
            .iter()
            .filter_map(|e| e.class.as_deref())
            .collect();
        for c in [
            "laterality",
            "zone",
            "count",
            "infection",
            "finding",
            "distribution",
        ] {
            assert!(classes.contains(c), "no entry of class {c}");
        }
        assert!(kb.entries.iter().all(|e| e.class.is_some()));
    }

    #[test]
    fn qata_style_captions() {
        let kb = kb();
        let cases: &[(&str, &[&str])] = &[
            (
                "Bilateral pulmonary infection, two infected areas, middle left lung and lower right lung.",
                &[
                    "bilateral",
                    "pulmonary infection",
                    "two infected areas",
                    "middle left lung",
                    "lower right lung",
                ],
            ),
            (
                "Unilateral pulmonary infection, one infected area, lower right lung.",
                &[
                    "unilateral",
                    "pulmonary infection",
                    "one infected area",
                    "lower right lung",
                ],
            ),
            (
                "Bilateral pulmonary infection, six infected areas, upper middle lower left lung and upper middle lower right lung.",
                &[
                    "bilateral",
                    "pulmonary infection",
                    "six infected areas",
                    "upper left lung",
                    "middle left lung",
                    "lower left lung",
                    "upper right lung",
                    "middle right lung",
                    "lower right lung",
                ],
            ),
            (
                "Bilateral pulmonary infection, three infected areas, upper lower left lung and lower right lung.",
                &[
                    "bilateral",
                    "pulmonary infection",
                    "three infected areas",
                    "upper left lung",
                    "lower left lung",
                    "lower right lung",
                ],
            ),
            (
                "Unilateral pulmonary infection, two infected areas, middle lower left lung.",
                &[
                    "unilateral",
                    "pulmonary infection",
                    "two infected areas",
                    "middle left lung",
                    "lower left lung",
                ],
            ),
            (
                "Bilateral pulmonary infection, five infected areas, upper middle left lung and upper middle lower right lung.",
                &[
                    "bilateral",
                    "pulmonary infection",
                    "five infected areas",
                    "upper left lung",
                    "middle left lung",
                    "upper right lung",
                    "middle right lung",
                    "lower right lung",
                ],
            ),
            (
                "bilateral pulmonary infection, four infected areas, upper left lung and upper middle lower right lung.",
                &[
                    "bilateral",
                    "pulmonary infection",
                    "four infected areas",
                    "upper left lung",
                    "upper right lung",
                    "middle right lung",
                    "lower right lung",
                ],
            ),
            // MosMedData+ forms: noisy plural, bare "left lung", "all ... lung", double period
            (
                "Unilateral pulmonary infection, one infected areas, left lung and middle right lung.",
                &[
                    "unilateral",
                    "pulmonary infection",
                    "one infected area",
                    "left lung",
                    "middle right lung",
                ],
            ),
            (
                "Bilateral pulmonary infection, nine infected areas, all left lung and all right lung..",
                &[
                    "bilateral",
                    "pulmonary infection",
                    "nine infected areas",
                    "all left lung",
                    "all right lung",
                ],
            ),
            (
                "Bilateral pulmonary infection, seven infected areas, all left lung and upper right lung.",
                &[
                    "bilateral",
                    "pulmonary infection",
                    "seven infected areas",
                    "all left lung",
                    "upper right lung",
                ],
            ),
            (
                "No pulmonary infection, zero infected areas.",
                &["no pulmonary infection"],
            ),
            (
                "Bilateral pulmonary infection, eight infected areas, middle left lung and middle right lung.",
                &[
                    "bilateral",
                    "pulmonary infection",
                    "eight infected areas",
                    "middle left lung",
                    "middle right lung",
                ],
            ),
            // Free-text report forms
            (
                "Peripheral ground-glass opacities and consolidation in the left upper and lower lobes, with a small left-sided pleural effusion.",
                &[
                    "peripheral distribution",
                    "ground-glass opacity",
                    "consolidation",
                    "left upper lobe",
                    "left lower lobe",
                    "left",
                    "pleural effusion",
                ],
            ),
            (
                "CRAZY-PAVING pattern, subpleural reticulation; air bronchograms in the right lower lobe.",
                &[
                    "crazy paving",
                    "subpleural",
                    "reticulation",
                    "air bronchogram",
                    "right lower lobe",
                ],
            ),
        ];
        for (caption, want) in cases {
            assert_eq!(terms(&kb, caption), sorted(want), "caption: {caption}");
        }
    }

    #[test]
    fn longest_match_claims_words() {
        let kb = kb();
        let left = kb.index_of("left").unwrap();
        let zone = kb.index_of("upper left lung").unwrap();
        assert_eq!(kb.match_report("upper left lung"), vec![zone]);
        let mut both = vec![left, zone];
        both.sort();
        assert_eq!(kb.match_report("Upper left lung; left-sided effusion"), {
            let mut v = both.clone();
            v.push(kb.index_of("pleural effusion").unwrap());
            v.sort();
            v
        });
        // whole words only
        assert!(kb.match_report("leftover rightmost").is_empty());
        // punctuation ends a phrase
        assert_eq!(terms(&kb, "upper. Left lung"), sorted(&["left lung"]));
        // result is sorted and deduplicated
        let m = kb.match_report("left lung, left lung, bilateral, bilateral");
        let mut s = m.clone();
        s.sort();
        s.dedup();
        assert_eq!(m, s);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn coordination_variants() {
        let kb = kb();
        let want = sorted(&["upper left lung", "lower left lung"]);
        for c in [
            "upper lower left lung",
            "upper and lower left lung",
            "upper, lower left lung",
            "Upper and lower left lungs",
        ] {
            assert_eq!(terms(&kb, c), want, "{c}");
        }
        assert_eq!(
            terms(&kb, "left upper and lower zones"),
            sorted(&["upper left lung", "lower left lung"])
        );
        // a single zone word is not coordination
        assert_eq!(
            terms(&kb, "upper right lung"),
            sorted(&["upper right lung"])
        );
    }

    /// The zones the matched passages name: a zone term its zone, a whole-lung term (`lung`, `extent`
    /// classes) its side's three.
    fn matched_zones(kb: &KnowledgeBase, caption: &str) -> Option<[bool; 6]> {
        let mut zones = [false; 6];
        let mut any = false;
        for i in kb.match_report(caption) {
            let e = &kb.entries[i];
            let base = if e.term.contains("left") { 0 } else { 3 };
            match e.class.as_deref() {
                Some("zone") => {
                    let z = ["upper", "middle", "lower"]
                        .iter()
                        .position(|w| e.term.starts_with(w))
                        .unwrap();
                    zones[base + z] = true;
                }
                Some("lung" | "extent") => zones[base..base + 3].fill(true),
                _ => continue,
            }
            any = true;
        }
        any.then_some(zones)
    }

    #[test]
    fn zones_agree_with_caption_groups() {
        use tgcnet_data::{CaptionMeta, normalize_caption};
        let kb = kb();
        let (t, f) = (true, false);
        for (caption, want) in [
            (
                "Bilateral pulmonary infection, three infected areas, upper middle lower left lung and middle right lung.",
                [t, t, t, f, t, f],
            ),
            (
                "Unilateral pulmonary infection, two infected area, upper and lower right lung .",
                [f, f, f, t, f, t],
            ),
            (
                "Unilateral pulmonary infection, one infected areas, left upper lung.",
                [t, f, f, f, f, f],
            ),
            (
                "Opacities in the left upper and lower zones, right base.",
                [t, f, t, f, f, t],
            ),
            (
                "Bilateral pulmonary infection, upper, middle and lower left lungs and all right lung.",
                [t; 6],
            ),
            (
                "Consolidation of the whole of the left lung.",
                [t, t, t, f, f, f],
            ),
        ] {
            let norm = normalize_caption(caption);
            assert_eq!(
                CaptionMeta::parse(&norm).zones,
                Some(want),
                "groups: {norm}"
            );
            assert_eq!(matched_zones(&kb, &norm), Some(want), "matching: {norm}");
            assert_eq!(
                matched_zones(&kb, caption),
                Some(want),
                "matching raw: {caption}"
            );
        }
        // Lobes are anatomy, not zones: neither side reads a zone from them.
        assert_eq!(CaptionMeta::parse("left upper lobe").zones, None);
        assert_eq!(matched_zones(&kb, "left upper lobe"), None);
        // Every surface form of a zone or whole-lung term in the shipped file reads as its zones.
        for e in kb
            .entries
            .iter()
            .filter(|e| matches!(e.class.as_deref(), Some("zone" | "lung" | "extent")))
        {
            for a in std::iter::once(&e.term).chain(&e.aliases) {
                assert_eq!(CaptionMeta::parse(a).zones, matched_zones(&kb, a), "{a}");
            }
        }
    }

    #[test]
    fn passage_text_joins_fields() {
        let kb = KnowledgeBase::from_toml_str(SMALL, "small.toml").unwrap();
        assert_eq!(kb.origin(), "small.toml");
        assert_eq!(
            kb.passages[1].text,
            "Upper left lung. X-ray: Upper left. CT: Upper left on CT."
        );
        assert_eq!(kb.entries[1].class.as_deref(), Some("zone"));
        let xray = kb
            .clone()
            .with_convention(SideConvention::Image, PassageModality::Xray);
        assert_eq!(xray.passages[1].text, "Upper left lung. X-ray: Upper left.");
        let ct = kb
            .clone()
            .with_convention(SideConvention::Image, PassageModality::Ct);
        assert_eq!(
            ct.passages[1].text,
            "Upper left lung. CT: Upper left on CT."
        );
        assert_eq!(kb.match_report("LEFT UPPER ZONE"), vec![1]);
    }

    /// The default file's side terms say, for each convention, on which half of the image the side
    /// lies, and never the other convention's half.
    #[test]
    fn side_passages_follow_the_convention() {
        let image = kb();
        assert_eq!(image.convention(), SideConvention::Image);
        let patient = kb().with_convention(SideConvention::Patient, PassageModality::Both);
        for term in ["left", "left lung", "right", "right lung"] {
            let i = image.index_of(term).unwrap();
            let (on_image, on_patient) = (&image.passages[i].text, &patient.passages[i].text);
            let side = if term.starts_with("left") {
                "left"
            } else {
                "right"
            };
            let other = if side == "left" { "right" } else { "left" };
            assert!(
                on_image.contains(&format!("image's {side}")) && !on_image.contains("patient's"),
                "{on_image}"
            );
            assert!(
                on_patient.contains(&format!("viewer's {other}"))
                    && on_patient.contains(&format!("patient's {side}")),
                "{on_patient}"
            );
        }
        // Terms without variants read the same in both conventions.
        let zone = image.index_of("pulmonary infection").unwrap();
        assert_eq!(image.passages[zone], patient.passages[zone]);
    }

    #[test]
    fn to_toml_round_trips() {
        let kb = kb();
        let s = kb.to_toml().unwrap();
        assert!(s.starts_with("[[entry]]\nterm = "), "{s}");
        let back = KnowledgeBase::from_toml_str(&s, "round trip").unwrap();
        assert_eq!(back.entries, kb.entries);
        assert_eq!(back.passages, kb.passages);
        let tricky = KnowledgeEntry {
            term: "tricky".to_string(),
            aliases: vec![],
            class: None,
            xray: "quote \"and\" back\\slash, line\nbreak\ttab".to_string(),
            ct: "unicode \u{e9} \u{1}".to_string(),
            patient: Some(SideTexts {
                xray: Some("patient's view".to_string()),
                ct: None,
            }),
            ..KnowledgeEntry::default()
        };
        let one = KnowledgeBase::from_entries(vec![tricky.clone()], "x").unwrap();
        let back = KnowledgeBase::from_toml_str(&one.to_toml().unwrap(), "y").unwrap();
        assert_eq!(back.entries, vec![tricky]);
    }

    fn err(s: &str) -> String {
        KnowledgeBase::from_toml_str(s, "bad.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn validation_errors_name_file_and_entry() {
        let e = err("[[entry]]\nterm = \"a\"\nxray = \"\"\nct = \"c\"\n");
        assert!(
            e.contains("bad.toml")
                && e.contains("entry #1 (\"a\")")
                && e.contains("`xray` is empty"),
            "{e}"
        );

        let e = err("[[entry]]\nterm = \"a\"\nxray = \"x\"\nct = \"c\"\ncolour = \"red\"\n");
        assert!(
            e.contains("bad.toml")
                && e.contains("entry #1 (\"a\")")
                && e.contains("unknown field `colour`"),
            "{e}"
        );

        let dup = "[[entry]]\nterm = \"a\"\nxray = \"x\"\nct = \"c\"\n\n[[entry]]\nterm = \"A\"\nxray = \"x\"\nct = \"c\"\n";
        let e = err(dup);
        assert!(
            e.contains("bad.toml")
                && e.contains("entry #2 (\"A\")")
                && e.contains("duplicate term")
                && e.contains("entry #1"),
            "{e}"
        );

        let amb = "[[entry]]\nterm = \"a\"\naliases = [\"b c\"]\nxray = \"x\"\nct = \"c\"\n\n[[entry]]\nterm = \"b-c\"\nxray = \"x\"\nct = \"c\"\n";
        let e = err(amb);
        assert!(
            e.contains("entry #2") && e.contains("already used by entry #1"),
            "{e}"
        );

        let e = err("[[entry]]\nterm = \"a\"\nct = \"c\"\n");
        assert!(
            e.contains("entry #1 (\"a\")") && e.contains("missing field `xray`"),
            "{e}"
        );

        let e = err("[[entry]]\nterm = \"a\"\naliases = \"b\"\nxray = \"x\"\nct = \"c\"\n");
        assert!(e.contains("`aliases` must be an array of strings"), "{e}");

        let e = err("[[entry]]\nterm = \"a\"\naliases = [\"b, c\"]\nxray = \"x\"\nct = \"c\"\n");
        assert!(
            e.contains("alias \"b, c\"") && e.contains("punctuation"),
            "{e}"
        );

        let e = err("[[entry]]\nterm = \"  \"\nxray = \"x\"\nct = \"c\"\n");
        assert!(
            e.contains("entry #1") && e.contains("`term` is empty"),
            "{e}"
        );

        let e = err("");
        assert!(e.contains("bad.toml") && e.contains("no [[entry]]"), "{e}");

        let e = err("version = 2\n");
        assert!(
            e.contains("bad.toml") && e.contains("unknown top-level key `version`"),
            "{e}"
        );

        let e = err("[[entry]\n");
        assert!(
            e.contains("bad.toml") && e.contains("not valid TOML"),
            "{e}"
        );

        let e = KnowledgeBase::from_toml_file(Path::new("/nonexistent/k.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/k.toml"), "{e}");
    }

    #[test]
    fn default_aliases_are_distinct_and_matchable() {
        let kb = kb();
        // every term and alias matches its own entry when it stands alone
        for (i, e) in kb.entries.iter().enumerate() {
            for a in std::iter::once(&e.term).chain(&e.aliases) {
                assert_eq!(kb.match_report(a), vec![i], "alias {a:?} of {:?}", e.term);
            }
        }
    }
}
