//! Captions: normalisation of noisy published text, left/right swapping for horizontal flips, and the
//! structured content of QaTa / MosMedData+ style captions ("Bilateral pulmonary infection, two infected
//! areas, upper left lung and lower right lung.").
//!
//! Zones are always in the order of SGSeg's `pseudo_label`: upper, middle, lower **left**, then upper,
//! middle, lower **right**, with "left" and "right" in the caption's own [`SideConvention`]
//! (QaTa-COV19's captions name sides as seen on the image; a radiologist names the patient's sides).

pub mod grammar;

use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde::{Deserialize, Serialize};

/// Which side "left" and "right" in a caption name. One chest X-ray, two habits: QaTa-COV19's captions
/// name sides as they appear on the image (measured from its masks: the centroid of a "left lung" lesion
/// lies in the image's left half in 97 % of the unilateral training captions), while a radiologist's
/// report names the patient's sides, and the patient's left lung is displayed on the image's right.
/// A model learns whichever its training captions use; its config records it (`laterality`), and captions in the other
/// convention are converted with [`SideConvention::convert`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SideConvention {
    /// "Left" is the image's left half, as displayed (QaTa-COV19, SGSeg and LViT captions).
    #[default]
    Image,
    /// "Left" is the patient's left, displayed on the image's right (radiological reports).
    Patient,
}

impl SideConvention {
    /// Both conventions, for option listings.
    pub const ALL: [SideConvention; 2] = [SideConvention::Image, SideConvention::Patient];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SideConvention::Image => "image",
            SideConvention::Patient => "patient",
        }
    }

    /// `caption`, written in this convention, rewritten for `to` (left and right swapped when they
    /// differ; the caption unchanged otherwise).
    pub fn convert(self, caption: &str, to: SideConvention) -> String {
        if self == to {
            caption.to_string()
        } else {
            swap_left_right(caption)
        }
    }

    /// Whether a lesion named "left" in this convention lies in the image's left half.
    pub fn left_is_image_left(self) -> bool {
        self == SideConvention::Image
    }
}

impl std::fmt::Display for SideConvention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SideConvention {
    type Err = crate::error::DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "image" => Ok(SideConvention::Image),
            "patient" => Ok(SideConvention::Patient),
            _ => Err(crate::error::DataError::invalid(
                "laterality",
                format!("`{s}` (expected `image` or `patient`)"),
            )),
        }
    }
}

/// Zone names in `pseudo_label` order (sides in the caption's convention).
pub const ZONE_NAMES: [&str; 6] = [
    "upper left",
    "middle left",
    "lower left",
    "upper right",
    "middle right",
    "lower right",
];

const NUMBER_WORDS: [&str; 13] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve",
];

macro_rules! re {
    ($name:ident, $pat:expr) => {
        static $name: LazyLock<Regex> = LazyLock::new(|| match Regex::new($pat) {
            Ok(r) => r,
            // The patterns are constants checked by the tests; this arm is unreachable in practice.
            Err(e) => panic!("invalid built-in regex {}: {e}", $pat),
        });
    };
}

re!(RE_WS, r"\s+");
re!(RE_SPACE_BEFORE_PUNCT, r" +([.,;:!?])");
re!(RE_MULTI_STOP, r"\.(?: ?\.)+");
re!(RE_MULTI_COMMA, r",(?: ?,)+");
re!(RE_NO_SPACE_AFTER, r"([,;:])([A-Za-z])");
re!(RE_COUNT_AREA, r"(?i)\b([a-z]+|\d+) infected (area)(s?)\b");
re!(RE_LEFT_RIGHT, r"(?i)\b(left|right)\b");
re!(
    RE_BOTH_LUNGS,
    r"\b(?:all|both|entire|whole)\s+(?:of\s+)?(?:the\s+)?lungs\b"
);

/// Cleans noisy published caption text. Pure and idempotent; the same function is used in training and
/// inference (turn it off with `normalize_captions: false` / `--no-normalize-captions`).
///
/// What it does, and nothing else (case and wording are kept):
/// - every run of whitespace (tabs, newlines, non-breaking spaces) becomes one space; leading and
///   trailing whitespace is removed;
/// - spaces before `.,;:!?` are removed ("lung ." → "lung.");
/// - repeated full stops or commas collapse ("lung.." → "lung.", "areas,," → "areas,");
/// - a missing space after `,;:` before a letter is added ("areas,upper" → "areas, upper");
/// - number agreement of "infected area(s)": "one infected areas" → "one infected area",
///   "two infected area" → "two infected areas" (also for digits, "zero" and "no").
pub fn normalize_caption(text: &str) -> String {
    let s = RE_WS.replace_all(text.trim(), " ");
    let s = RE_SPACE_BEFORE_PUNCT.replace_all(&s, "$1");
    let s = RE_MULTI_STOP.replace_all(&s, ".");
    let s = RE_MULTI_COMMA.replace_all(&s, ",");
    let s = RE_NO_SPACE_AFTER.replace_all(&s, "$1 $2");
    let s = RE_COUNT_AREA.replace_all(&s, |c: &Captures| {
        let word = &c[1];
        let plural = match number_value(word) {
            Some(n) => n != 1,
            None if word.eq_ignore_ascii_case("no") => true,
            None if word.eq_ignore_ascii_case("single") || word.eq_ignore_ascii_case("a") => false,
            None => return c[0].to_string(),
        };
        format!("{word} infected {}{}", &c[2], if plural { "s" } else { "" })
    });
    s.trim().to_string()
}

/// Swaps the words "left" and "right" (whole words, any case; the case pattern is kept: "Left" →
/// "Right", "LEFT" → "RIGHT"). Used together with a horizontal flip of the image (in either
/// [`SideConvention`] a flip exchanges the sides a caption must name), and to convert between conventions.
pub fn swap_left_right(text: &str) -> String {
    RE_LEFT_RIGHT
        .replace_all(text, |c: &Captures| {
            let w = &c[1];
            let to = if w.eq_ignore_ascii_case("left") {
                "right"
            } else {
                "left"
            };
            match_case(w, to)
        })
        .into_owned()
}

fn match_case(model: &str, word: &str) -> String {
    if model.chars().all(|c| c.is_ascii_uppercase()) {
        word.to_ascii_uppercase()
    } else if model.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
        let mut out = word[..1].to_ascii_uppercase();
        out.push_str(&word[1..]);
        out
    } else {
        word.to_string()
    }
}

/// The value of a number word ("zero" … "twelve") or a decimal number.
pub fn number_value(word: &str) -> Option<u32> {
    if let Ok(n) = word.parse::<u32>() {
        return Some(n);
    }
    let lw = word.to_ascii_lowercase();
    NUMBER_WORDS.iter().position(|w| *w == lw).map(|i| i as u32)
}

/// The English word for `n` ("one" … "twelve"), or the digits above twelve.
pub fn number_word(n: u32) -> String {
    NUMBER_WORDS
        .get(n as usize)
        .map(|w| w.to_string())
        .unwrap_or_else(|| n.to_string())
}

/// Unilateral / bilateral infection, as stated by the caption or the annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Laterality {
    /// "No pulmonary infection".
    None,
    /// One lung infected.
    Unilateral,
    /// Both lungs infected.
    Bilateral,
}

/// The structured content of a caption: what the annotation states (SGSeg JSON) or what could be parsed
/// from the text. Every field is `None` where it is not known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CaptionMeta {
    /// Whether one lung, both or none is infected.
    pub laterality: Option<Laterality>,
    /// Number of infected areas as stated ("two infected areas" → 2).
    pub areas: Option<u32>,
    /// Zone flags in [`ZONE_NAMES`] order (upper/middle/lower left, upper/middle/lower right; sides in
    /// the caption's convention), as [`grammar::named_zones`] reads them: a side named without a zone
    /// ("left lung", "all left lung") sets its three zones.
    pub zones: Option<[bool; 6]>,
}

impl CaptionMeta {
    /// Parses a QaTa / MosMedData+ style caption. Unknown parts stay `None`.
    pub fn parse(caption: &str) -> CaptionMeta {
        let lower = caption.to_ascii_lowercase();
        let laterality = if lower.contains("bilateral") {
            Some(Laterality::Bilateral)
        } else if lower.contains("unilateral") {
            Some(Laterality::Unilateral)
        } else if lower.contains("no pulmonary infection") || lower.contains("no infection") {
            Some(Laterality::None)
        } else {
            None
        };
        let areas = RE_COUNT_AREA
            .captures(&lower)
            .and_then(|c| number_value(&c[1]).or(if &c[1] == "no" { Some(0) } else { None }));
        // One grammar with knowledge matching (see `grammar`): the zones are read from the same phrases.
        let named = grammar::named_zones(&grammar::phrases(&lower));
        let mut any = named.is_some();
        let mut zones = named.unwrap_or([false; 6]);
        if RE_BOTH_LUNGS.is_match(&lower) {
            any = true;
            zones = [true; 6];
        }
        let zones = if any {
            Some(zones)
        } else if laterality == Some(Laterality::None) {
            Some([false; 6])
        } else {
            None
        };
        CaptionMeta {
            laterality,
            areas,
            zones,
        }
    }

    /// Whether the stated laterality contradicts the sides named ("Unilateral …, left lung and middle
    /// right lung", "Bilateral …, upper left lung", "No pulmonary infection …, left lung"). `None` when
    /// either part is unknown.
    pub fn laterality_contradiction(&self) -> Option<String> {
        let (lat, zones) = (self.laterality?, self.zones?);
        let left = zones[..3].iter().any(|&z| z);
        let right = zones[3..].iter().any(|&z| z);
        let sides = left as u32 + right as u32;
        let ok = match lat {
            Laterality::None => sides == 0,
            Laterality::Unilateral => sides == 1,
            Laterality::Bilateral => sides == 2,
        };
        if ok {
            None
        } else {
            Some(format!("{:?} infection but {} side(s) named", lat, sides))
        }
    }

    /// The meta with left and right exchanged (for a horizontally flipped sample).
    pub fn swapped(&self) -> CaptionMeta {
        let zones = self.zones.map(|z| [z[3], z[4], z[5], z[0], z[1], z[2]]);
        CaptionMeta { zones, ..*self }
    }
}

/// A QaTa-style caption for lesions in `zones` ([`ZONE_NAMES`] order, patient sides), with the count
/// of infected areas being the number of zones (SGSeg's convention), e.g.
/// "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.".
/// With no zone: "No pulmonary infection, zero infected areas.".
pub fn describe_zones(zones: &[bool; 6]) -> String {
    let side = |base: usize, name: &str| -> Option<String> {
        let parts: Vec<&str> = ["upper", "middle", "lower"]
            .iter()
            .enumerate()
            .filter(|(i, _)| zones[base + i])
            .map(|(_, w)| *w)
            .collect();
        if parts.is_empty() {
            None
        } else {
            Some(format!("{} {name} lung", parts.join(" ")))
        }
    };
    let left = side(0, "left");
    let right = side(3, "right");
    let n = zones.iter().filter(|&&z| z).count() as u32;
    let count = format!(
        "{} infected area{}",
        number_word(n),
        if n == 1 { "" } else { "s" }
    );
    match (left, right) {
        (None, None) => format!("No pulmonary infection, {count}."),
        (Some(l), Some(r)) => format!("Bilateral pulmonary infection, {count}, {l} and {r}."),
        (Some(s), None) | (None, Some(s)) => {
            format!("Unilateral pulmonary infection, {count}, {s}.")
        }
    }
}

/// Lower-case words of a caption (letters and digits; punctuation dropped), for vocabulary statistics.
pub fn words(caption: &str) -> impl Iterator<Item = String> + '_ {
    caption
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_published_noise() {
        assert_eq!(
            normalize_caption(
                "Unilateral pulmonary infection, one infected areas, middle left lung."
            ),
            "Unilateral pulmonary infection, one infected area, middle left lung."
        );
        assert_eq!(
            normalize_caption(
                "Bilateral pulmonary infection, nine infected areas, all left lung and all right lung.."
            ),
            "Bilateral pulmonary infection, nine infected areas, all left lung and all right lung."
        );
        assert_eq!(
            normalize_caption(
                "  Bilateral  pulmonary infection ,two infected area , upper left lung .  "
            ),
            "Bilateral pulmonary infection, two infected areas, upper left lung."
        );
        assert_eq!(normalize_caption("a\t\nb . . ."), "a b.");
        assert_eq!(
            normalize_caption("No pulmonary infection, zero infected area."),
            "No pulmonary infection, zero infected areas."
        );
        assert_eq!(normalize_caption("One infected areas"), "One infected area");
        assert_eq!(normalize_caption(""), "");
    }

    #[test]
    fn normalization_is_idempotent_and_keeps_clean_text() {
        let clean = "bilateral pulmonary infection, five infected areas, upper middle lower left lung and middle lower right lung.";
        assert_eq!(normalize_caption(clean), clean);
        for s in [
            "x ..  y ,, z",
            "one infected areas..",
            "  Left lung ; right lung :a",
        ] {
            let once = normalize_caption(s);
            assert_eq!(normalize_caption(&once), once);
        }
    }

    #[test]
    fn swaps_left_and_right() {
        assert_eq!(
            swap_left_right("Bilateral, upper Left lung and lower right lung. LEFT"),
            "Bilateral, upper Right lung and lower left lung. RIGHT"
        );
        assert_eq!(swap_left_right("leftover rightmost"), "leftover rightmost");
        let s = "upper left lung and middle right lung";
        assert_eq!(swap_left_right(&swap_left_right(s)), s);
    }

    #[test]
    fn parses_meta() {
        let m = CaptionMeta::parse(
            "bilateral pulmonary infection, five infected areas, upper middle lower left lung and middle lower right lung.",
        );
        assert_eq!(m.laterality, Some(Laterality::Bilateral));
        assert_eq!(m.areas, Some(5));
        assert_eq!(m.zones, Some([true, true, true, false, true, true]));
        assert_eq!(m.laterality_contradiction(), None);
        let m = CaptionMeta::parse(
            "Unilateral pulmonary infection, one infected areas, left lung and middle right lung.",
        );
        assert_eq!(m.zones, Some([true, true, true, false, true, false]));
        assert!(m.laterality_contradiction().is_some());
        let m = CaptionMeta::parse(
            "Bilateral pulmonary infection, two infected areas, all left lung and all right lung..",
        );
        assert_eq!(m.zones, Some([true; 6]));
        let m = CaptionMeta::parse("No pulmonary infection, zero infected areas.");
        assert_eq!(m.laterality, Some(Laterality::None));
        assert_eq!(m.areas, Some(0));
        assert_eq!(m.zones, Some([false; 6]));
        assert_eq!(CaptionMeta::parse("a cat").zones, None);
    }

    #[test]
    fn describe_roundtrips_through_parse() {
        for bits in 0u32..64 {
            let zones: [bool; 6] = std::array::from_fn(|i| bits & (1 << i) != 0);
            let text = describe_zones(&zones);
            let m = CaptionMeta::parse(&text);
            assert_eq!(m.zones, Some(zones), "{text}");
            assert_eq!(m.areas, Some(bits.count_ones()), "{text}");
            assert_eq!(m.laterality_contradiction(), None, "{text}");
            assert_eq!(normalize_caption(&text), text);
            let swapped = CaptionMeta::parse(&swap_left_right(&text));
            assert_eq!(swapped.zones, m.swapped().zones);
        }
        assert_eq!(
            describe_zones(&[true, false, false, false, false, true]),
            "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."
        );
    }
}
