//! The caption grammar: how a caption is cut into words and phrases, how coordinated lung zones are
//! expanded, and which lung zones a caption names. Caption groups ([`super::CaptionMeta`]) and DATE's
//! knowledge matching (`tgcnet_model::KnowledgeBase::match_report`) both read captions through it, so
//! that they cannot name different zones for the same sentence.
//!
//! 1. **Words.** Text is lower-cased and cut into words of letters and digits. Hyphens, slashes,
//!    apostrophes and underscores separate words without ending a phrase (`ground-glass` =
//!    `ground glass`). Commas and every other punctuation mark end a phrase.
//! 2. **Coordinated zones are expanded**, because reports stack zone words in front of one side: a run of
//!    two or more of `upper`/`middle`/`lower` (optionally joined by `and`, `or` or commas) followed by
//!    `left`/`right` and a head word `lung`/`zone`/`lobe` (plural allowed) becomes one phrase per zone
//!    word (`upper middle lower left lung` → `upper left lung | middle left lung | lower left lung`); the
//!    side-first order (`left upper and lower lobes`) likewise.
//! 3. **Zones** are read from the expanded phrases: `upper left lung`, `left upper zone`, `upper zone of
//!    the left lung`, `left mid zone`, `left base` name one zone; a side named without a zone (`left
//!    lung`, `all left lung`, `whole of the left lung`, `left hemithorax`) names its three zones. Lobes
//!    (`left upper lobe`) are anatomy, not zones, and name none.

const ZONE_WORDS: [&str; 3] = ["upper", "middle", "lower"];
const SIDE_WORDS: [&str; 2] = ["left", "right"];
const COORDINATORS: [&str; 2] = ["and", "or"];
/// Words that may stand between zone words and the side without changing which zones are named.
const QUALIFIERS: [&str; 8] = [
    "all", "whole", "entire", "both", "of", "the", "zone", "zones",
];

/// A token of caption text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A lower-cased word of letters and digits.
    Word(String),
    /// A comma: ends a phrase, but may join coordinated zone words.
    Comma,
    /// Any other punctuation (and the seam between expanded phrases): ends a phrase.
    Break,
}

impl Token {
    /// The word, if this token is one.
    pub fn word(&self) -> Option<&str> {
        match self {
            Token::Word(w) => Some(w),
            _ => None,
        }
    }
}

/// Cuts `s` into [`Token`]s (rule 1).
pub fn tokenize(s: &str) -> Vec<Token> {
    let mut toks = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, toks: &mut Vec<Token>| {
        if !word.is_empty() {
            toks.push(Token::Word(std::mem::take(word)));
        }
    };
    for c in s.chars() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if c.is_whitespace() || matches!(c, '-' | '/' | '\'' | '_' | '\u{2019}') {
            flush(&mut word, &mut toks);
        } else {
            flush(&mut word, &mut toks);
            toks.push(if c == ',' { Token::Comma } else { Token::Break });
        }
    }
    flush(&mut word, &mut toks);
    toks
}

/// The caption's tokens with coordinated zones expanded (rules 1 and 2): what both caption groups and
/// knowledge matching read.
pub fn phrases(caption: &str) -> Vec<Token> {
    expand_coordination(tokenize(caption))
}

fn word_in(t: &Token, set: &[&str]) -> bool {
    t.word().is_some_and(|w| set.contains(&w))
}

fn head_word(t: &Token) -> Option<&'static str> {
    match t.word()? {
        "lung" | "lungs" => Some("lung"),
        "zone" | "zones" => Some("zone"),
        "lobe" | "lobes" => Some("lobe"),
        _ => None,
    }
}

/// Reads a run of coordinated zone words starting at `i`; returns the zone words and the index just
/// after the run. A run needs at least two zone words.
fn zone_run(toks: &[Token], i: usize) -> Option<(Vec<String>, usize)> {
    let mut zones = Vec::new();
    let mut j = i;
    loop {
        match toks.get(j).and_then(Token::word) {
            Some(w) if ZONE_WORDS.contains(&w) => {
                zones.push(w.to_string());
                j += 1;
            }
            _ => break,
        }
        // Optional coordinators (`and`, `or`, `,`) between zone words.
        let mut k = j;
        while let Some(t) = toks.get(k) {
            if *t == Token::Comma || word_in(t, &COORDINATORS) {
                k += 1;
            } else {
                break;
            }
        }
        if k > j && toks.get(k).is_some_and(|t| word_in(t, &ZONE_WORDS)) {
            j = k;
        }
    }
    (zones.len() >= 2).then_some((zones, j))
}

/// Rule 2: `upper middle lower left lung` → `upper left lung | middle left lung | lower left lung`, and
/// `left upper and lower lobes` → `left upper lobe | left lower lobe`.
pub fn expand_coordination(toks: Vec<Token>) -> Vec<Token> {
    let mut out = Vec::with_capacity(toks.len() + 8);
    let mut i = 0;
    while i < toks.len() {
        // zone-first: ZONE (sep? ZONE)+ SIDE HEAD
        if let Some((zones, j)) = zone_run(&toks, i)
            && let (Some(side), Some(head)) = (
                toks.get(j).and_then(Token::word),
                toks.get(j + 1).and_then(head_word),
            )
            && SIDE_WORDS.contains(&side)
        {
            for (n, z) in zones.iter().enumerate() {
                if n > 0 {
                    out.push(Token::Break);
                }
                out.extend([z.as_str(), side, head].map(|w| Token::Word(w.to_string())));
            }
            i = j + 2;
            continue;
        }
        // side-first: SIDE ZONE (sep? ZONE)+ HEAD
        if let Some(side) = toks.get(i).and_then(Token::word)
            && SIDE_WORDS.contains(&side)
            && let Some((zones, j)) = zone_run(&toks, i + 1)
            && let Some(head) = toks.get(j).and_then(head_word)
        {
            for (n, z) in zones.iter().enumerate() {
                if n > 0 {
                    out.push(Token::Break);
                }
                out.extend([side, z.as_str(), head].map(|w| Token::Word(w.to_string())));
            }
            i = j + 1;
            continue;
        }
        out.push(toks[i].clone());
        i += 1;
    }
    out
}

/// The zone index (0 upper, 1 middle, 2 lower) of a zone word, and whether the word is its own head
/// (`midzone`, `base`).
fn zone_of(w: &str) -> Option<(usize, bool)> {
    match w {
        "upper" => Some((0, false)),
        "middle" | "mid" => Some((1, false)),
        "lower" => Some((2, false)),
        "midzone" | "midzones" => Some((1, true)),
        "base" | "bases" => Some((2, true)),
        _ => None,
    }
}

/// The zones named by the phrases of a caption (rule 3), in [`super::ZONE_NAMES`] order with sides in
/// the caption's convention; `None` when no side is named with a lung, zone or base.
pub fn named_zones(toks: &[Token]) -> Option<[bool; 6]> {
    let mut zones = [false; 6];
    let mut any = false;
    let word = |i: usize| toks.get(i).and_then(Token::word);
    for (i, t) in toks.iter().enumerate() {
        let base = match t.word() {
            Some("left") => 0,
            Some("right") => 3,
            _ => continue,
        };
        // side-first: `left upper lung`, `left upper lung zone`, `left mid zone`, `left midzone`,
        // `left base`, `left lung base`
        let mut j = i + 1;
        if word(j) == Some("lung") && word(j + 1).and_then(zone_of).is_some_and(|(_, own)| own) {
            j += 1;
        }
        if let Some((z, own)) = word(j).and_then(zone_of)
            && (own || matches!(word(j + 1), Some("lung" | "lungs" | "zone" | "zones")))
        {
            zones[base + z] = true;
            any = true;
            continue;
        }
        // zone-first: `upper left lung`, `upper zone of the left lung`, `all left lung`, `left lung`
        if !matches!(
            word(i + 1),
            Some("lung" | "lungs" | "zone" | "zones" | "hemithorax")
        ) {
            continue;
        }
        any = true;
        let mut named = false;
        for w in toks[..i].iter().rev().map_while(Token::word) {
            if let Some((z, false)) = zone_of(w) {
                zones[base + z] = true;
                named = true;
            } else if !QUALIFIERS.contains(&w) {
                break;
            }
        }
        if !named {
            zones[base..base + 3].fill(true);
        }
    }
    any.then_some(zones)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(c: &str) -> Option<[bool; 6]> {
        named_zones(&phrases(c))
    }

    #[test]
    fn expands_coordinated_zones() {
        let words = |c: &str| -> Vec<String> {
            phrases(c)
                .iter()
                .map(|t| t.word().unwrap_or("|").to_string())
                .collect()
        };
        assert_eq!(
            words("upper, middle and lower left lungs"),
            [
                "upper", "left", "lung", "|", "middle", "left", "lung", "|", "lower", "left",
                "lung"
            ]
        );
        assert_eq!(
            words("left upper and lower lobes"),
            ["left", "upper", "lobe", "|", "left", "lower", "lobe"]
        );
        assert_eq!(words("upper right lung"), ["upper", "right", "lung"]);
        assert_eq!(
            words("ground-glass, a."),
            ["ground", "glass", "|", "a", "|"]
        );
    }

    #[test]
    fn reads_zones_in_every_order() {
        let t = true;
        let f = false;
        for (c, want) in [
            (
                "upper middle lower left lung and middle right lung",
                [t, t, t, f, t, f],
            ),
            ("upper and lower right lung", [f, f, f, t, f, t]),
            ("left upper lung", [t, f, f, f, f, f]),
            ("right lower zone", [f, f, f, f, f, t]),
            ("upper zone of the left lung", [t, f, f, f, f, f]),
            ("left mid zone and right midzone", [f, t, f, f, t, f]),
            ("left base, right lung base", [f, f, t, f, f, t]),
            ("all left lung and whole of the right lung", [t; 6]),
            ("left lung", [t, t, t, f, f, f]),
            ("all zones of the right lung", [f, f, f, t, t, t]),
        ] {
            assert_eq!(zones(c), Some(want), "{c}");
        }
        for c in [
            "left upper lobe",
            "left-sided effusion",
            "leftover",
            "a cat",
        ] {
            assert_eq!(zones(c), None, "{c}");
        }
    }
}
