//! `tgcnet data check`: finds what would break or bias training before it starts.
//!
//! Errors (exit code non-zero): no samples, missing files or folders, unreadable images/masks, an
//! image and mask of different sizes, empty captions, one image listed twice with different captions
//! or in two splits.
//! Warnings: masks that are not cleanly binary (with their value histogram; the loader still
//! thresholds them), empty masks, duplicate entries with the same caption, file names differing only in
//! case, patients (e.g. `sub-s10566` in QaTa) in more than one split, captions whose laterality
//! contradicts the sides they name, annotation metadata disagreeing with the caption.
//! Summary: per split, sample counts, image sizes, mask foreground, and the caption vocabulary
//! (distinct captions, words, top words, unilateral/bilateral, infected-area counts, zones).
//!
//! Images and masks are decoded in parallel (rayon); the text checks run even when the image folders
//! are missing (e.g. the MosMedData+ spreadsheets alone).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::caption::SideConvention;
use crate::caption::{CaptionMeta, Laterality, ZONE_NAMES, normalize_caption, words};
use crate::dataset::{Dataset, Format, Sample};
use crate::error::{DataError, Result};
use crate::imageio::{DecodeOptions, read_image, read_mask};

/// How serious an issue is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The data cannot be used as it is (training or evaluation would fail or be wrong).
    Error,
    /// Probably a mistake; the data can still be used.
    Warning,
    /// Worth knowing; nothing is wrong.
    Info,
}

/// The kind of a problem, serialised as its stable code (`missing_folder`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// The dataset, or a split of it, has no samples.
    NoSamples,
    /// A folder the annotations point into does not exist.
    MissingFolder,
    /// An image or mask the annotations name does not exist (a case-only variant is reported if one does).
    MissingFile,
    /// An image or mask could not be decoded.
    Unreadable,
    /// A mask's size differs from its image's.
    SizeMismatch,
    /// A mask has values other than background and one foreground value.
    NonBinaryMask,
    /// A mask has no foreground.
    EmptyMask,
    /// A sample has an empty caption.
    EmptyCaption,
    /// An image is listed twice with the same caption.
    DuplicateEntry,
    /// An image is listed twice with different captions.
    ConflictingCaptions,
    /// The same image belongs to two splits.
    ImageInTwoSplits,
    /// File names that differ only in case (they collide on case-insensitive file systems).
    CaseOnlyDifference,
    /// A patient has images in more than one split (a leak that inflates validation scores).
    PatientOverlap,
    /// A caption's stated laterality contradicts the sides it names ("unilateral" with both lungs, …).
    LateralityContradiction,
    /// The masks show the other side convention than the one expected ([`CheckOptions::expected_laterality`]).
    LateralityConvention,
    /// The annotation's structured fields (laterality, areas, zones) disagree with its caption.
    AnnotationMismatch,
    /// Files in the data folders that no annotation references.
    UnreferencedFiles,
}

impl IssueKind {
    /// The stable code, as in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueKind::NoSamples => "no_samples",
            IssueKind::MissingFolder => "missing_folder",
            IssueKind::MissingFile => "missing_file",
            IssueKind::Unreadable => "unreadable",
            IssueKind::SizeMismatch => "size_mismatch",
            IssueKind::NonBinaryMask => "non_binary_mask",
            IssueKind::EmptyMask => "empty_mask",
            IssueKind::EmptyCaption => "empty_caption",
            IssueKind::DuplicateEntry => "duplicate_entry",
            IssueKind::ConflictingCaptions => "conflicting_captions",
            IssueKind::ImageInTwoSplits => "image_in_two_splits",
            IssueKind::CaseOnlyDifference => "case_only_difference",
            IssueKind::PatientOverlap => "patient_overlap",
            IssueKind::LateralityContradiction => "laterality_contradiction",
            IssueKind::LateralityConvention => "laterality_convention",
            IssueKind::AnnotationMismatch => "annotation_mismatch",
            IssueKind::UnreferencedFiles => "unreferenced_files",
        }
    }
}

impl std::fmt::Display for IssueKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for IssueKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One problem found.
#[derive(Clone, Debug, Serialize)]
pub struct Issue {
    /// How serious it is.
    pub severity: Severity,
    /// What kind of problem it is.
    pub kind: IssueKind,
    /// The split it was found in; `None` for dataset-wide issues.
    pub split: Option<String>,
    /// The file concerned, if one is.
    pub file: Option<PathBuf>,
    /// Row or key in the annotation file, e.g. "Train_text.xlsx: row 12".
    pub location: Option<String>,
    /// What is wrong, without the file name (that is `file`).
    pub message: String,
}

impl Issue {
    fn new(
        severity: Severity,
        kind: IssueKind,
        split: Option<&str>,
        sample: Option<&Sample>,
        file: Option<&Path>,
        message: String,
    ) -> Self {
        Issue {
            severity,
            kind,
            split: split.map(str::to_string),
            file: file.map(Path::to_path_buf),
            location: sample.map(|s| s.source.to_string()),
            message,
        }
    }
}

/// Options of [`check`].
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Decode every image and mask (false: existence checks only).
    pub decode: bool,
    /// Decoding threads (0: all cores).
    pub workers: usize,
    /// How images and masks are decoded (CT window, DICOM handling).
    pub decode_options: DecodeOptions,
    /// Examples listed per issue kind in the text report.
    pub examples: usize,
    /// The side convention a model or run config expects of the captions; a dataset whose masks
    /// show the other one gets a `laterality_convention` warning.
    pub expected_laterality: Option<SideConvention>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            decode: true,
            workers: 0,
            decode_options: DecodeOptions::default(),
            examples: 5,
            expected_laterality: None,
        }
    }
}

/// Caption statistics of a set of samples.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Vocabulary {
    /// Number of captions.
    pub captions: usize,
    /// Distinct captions, as written.
    pub distinct_captions: usize,
    /// Distinct captions after [`normalize_caption`].
    pub distinct_normalized: usize,
    /// Captions that [`normalize_caption`] changes.
    pub changed_by_normalization: usize,
    /// Empty captions.
    pub empty_captions: usize,
    /// Words over all captions.
    pub total_words: usize,
    /// Distinct words (lower case).
    pub distinct_words: usize,
    /// Mean words per caption.
    pub mean_words: f64,
    /// Words in the longest caption.
    pub max_words: usize,
    /// The most frequent words (lower case) with their counts.
    pub top_words: Vec<(String, usize)>,
    /// The most frequent captions with their counts.
    pub top_captions: Vec<(String, usize)>,
    /// Captions that describe one lung.
    pub unilateral: usize,
    /// Captions that describe both lungs.
    pub bilateral: usize,
    /// Captions that state no infection.
    pub no_infection: usize,
    /// Captions whose laterality cannot be read from them.
    pub laterality_unknown: usize,
    /// Stated number of infected areas → number of samples ("?" when not stated).
    pub infected_areas: BTreeMap<String, usize>,
    /// Zone name → number of samples naming it (patient sides).
    pub zones: BTreeMap<String, usize>,
}

impl Vocabulary {
    /// Statistics of `samples` (captions as published; laterality, counts and zones from the samples'
    /// metadata).
    pub fn of(samples: &[Sample]) -> Vocabulary {
        let mut v = Vocabulary {
            captions: samples.len(),
            ..Default::default()
        };
        let mut caps: HashMap<&str, usize> = HashMap::new();
        let mut norm: BTreeSet<String> = BTreeSet::new();
        let mut wc: HashMap<String, usize> = HashMap::new();
        for s in samples {
            *caps.entry(s.caption.as_str()).or_insert(0) += 1;
            let n = normalize_caption(&s.caption);
            if n != s.caption {
                v.changed_by_normalization += 1;
            }
            if n.is_empty() {
                v.empty_captions += 1;
            }
            norm.insert(n);
            let mut k = 0;
            for w in words(&s.caption) {
                k += 1;
                *wc.entry(w).or_insert(0) += 1;
            }
            v.total_words += k;
            v.max_words = v.max_words.max(k);
            match s.meta.laterality {
                Some(Laterality::Unilateral) => v.unilateral += 1,
                Some(Laterality::Bilateral) => v.bilateral += 1,
                Some(Laterality::None) => v.no_infection += 1,
                None => v.laterality_unknown += 1,
            }
            let key = s
                .meta
                .areas
                .map(|a| a.to_string())
                .unwrap_or_else(|| "?".into());
            *v.infected_areas.entry(key).or_insert(0) += 1;
            if let Some(z) = s.meta.zones {
                for (i, name) in ZONE_NAMES.iter().enumerate() {
                    if z[i] {
                        *v.zones.entry(name.to_string()).or_insert(0) += 1;
                    }
                }
            }
        }
        v.distinct_captions = caps.len();
        v.distinct_normalized = norm.len();
        v.distinct_words = wc.len();
        v.mean_words = if samples.is_empty() {
            0.0
        } else {
            v.total_words as f64 / samples.len() as f64
        };
        let mut words: Vec<(String, usize)> = wc.into_iter().collect();
        words.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        words.truncate(15);
        v.top_words = words;
        let mut caps: Vec<(String, usize)> =
            caps.into_iter().map(|(c, n)| (c.to_string(), n)).collect();
        caps.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        caps.truncate(5);
        v.top_captions = caps;
        v
    }
}

/// Per-split summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SplitSummary {
    /// Split name.
    pub name: String,
    /// Samples listed in the split.
    pub samples: usize,
    /// Samples that name a mask.
    pub with_mask: usize,
    /// Images that exist on disk.
    pub images_found: usize,
    /// Masks that exist on disk.
    pub masks_found: usize,
    /// Images decoded without error.
    pub images_decoded: usize,
    /// "WxH" → count.
    pub image_sizes: BTreeMap<String, usize>,
    /// Decoded masks without foreground.
    pub empty_masks: usize,
    /// Decoded masks that are not cleanly binary.
    pub non_binary_masks: usize,
    /// Median fraction of foreground pixels over the decoded masks.
    pub foreground_median: Option<f64>,
    /// Which half of the image one-sided captions' masks lie in (the side convention).
    pub sides: SideEvidence,
    /// Caption statistics of the split.
    pub vocabulary: Vocabulary,
}

/// The result of [`check`].
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// The dataset root.
    pub path: PathBuf,
    /// The layout the dataset was read as.
    pub format: Format,
    /// One summary per split.
    pub splits: Vec<SplitSummary>,
    /// Caption statistics over all splits.
    pub vocabulary: Vocabulary,
    /// Images whose names carry a patient id, and the patients shared between splits.
    pub patients_with_id: usize,
    /// Distinct patient ids.
    pub patients: usize,
    /// Patients with images in more than one split.
    pub patients_in_several_splits: usize,
    /// Histogram of mask values over the masks that are not cleanly binary.
    pub non_binary_mask_values: BTreeMap<i64, usize>,
    /// The side evidence of all splits together, and the convention it supports (None: too few
    /// one-sided captions with masks, or mixed).
    pub sides: SideEvidence,
    /// The convention the masks support.
    pub laterality: Option<SideConvention>,
    /// Issues of severity [`Severity::Error`].
    pub errors: usize,
    /// Issues of severity [`Severity::Warning`].
    pub warnings: usize,
    /// Every issue found, in the order found.
    pub issues: Vec<Issue>,
    #[serde(skip)]
    examples: usize,
}

impl CheckReport {
    /// True when any issue is an error (`data check` then exits non-zero).
    pub fn has_errors(&self) -> bool {
        self.errors > 0
    }
}

/// Opens the dataset at `path` and checks it.
pub fn check(path: &Path, format: Option<Format>, opts: &CheckOptions) -> Result<CheckReport> {
    let ds = Dataset::open(path, format)?;
    check_dataset(&ds, opts)
}

struct Listing {
    dirs: HashMap<PathBuf, Option<Vec<String>>>,
}

impl Listing {
    fn entries(&mut self, dir: &Path) -> Option<&Vec<String>> {
        self.dirs
            .entry(dir.to_path_buf())
            .or_insert_with(|| {
                std::fs::read_dir(dir).ok().map(|rd| {
                    let mut v: Vec<String> = rd
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    v.sort();
                    v
                })
            })
            .as_ref()
    }

    /// Some(true) exists, Some(false) missing in an existing folder, None folder missing.
    fn exists(&mut self, p: &Path) -> Option<bool> {
        let dir = p.parent().unwrap_or(Path::new("."));
        let name = p.file_name()?.to_string_lossy().into_owned();
        self.entries(dir).map(|e| e.binary_search(&name).is_ok())
    }

    fn case_variant(&mut self, p: &Path) -> Option<String> {
        let dir = p.parent()?;
        let name = p.file_name()?.to_string_lossy().to_lowercase();
        self.entries(dir)?
            .iter()
            .find(|e| e.to_lowercase() == name)
            .cloned()
    }
}

struct Decoded {
    image: Option<std::result::Result<(usize, usize), DataError>>,
    mask: Option<std::result::Result<MaskInfo, DataError>>,
}

struct MaskInfo {
    size: (usize, usize),
    binary: bool,
    histogram: BTreeMap<i64, usize>,
    foreground: f64,
    /// Horizontal centroid of the foreground as a fraction of the width (None: empty mask).
    centroid_x: Option<f64>,
}

/// Evidence for the side convention of a split's captions, from its masks: for captions that name one
/// side only, on which half of the image the mask's centroid lies.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SideEvidence {
    /// Captions naming only the left side (with a non-empty decoded mask).
    pub left_captions: usize,
    /// ... whose mask centroid lies in the image's left half.
    pub left_on_image_left: usize,
    /// Captions naming only the right side (with a non-empty decoded mask).
    pub right_captions: usize,
    /// ... whose mask centroid lies in the image's right half.
    pub right_on_image_right: usize,
}

impl SideEvidence {
    /// The share of one-sided captions whose mask lies on the side the image convention predicts.
    pub fn image_agreement(&self) -> Option<f64> {
        let n = self.left_captions + self.right_captions;
        (n > 0).then(|| (self.left_on_image_left + self.right_on_image_right) as f64 / n as f64)
    }

    /// The convention the masks support: at least 80 % of the one-sided captions on one side (and 10
    /// captions at least); None when the evidence is thin or mixed.
    pub fn convention(&self) -> Option<SideConvention> {
        let n = self.left_captions + self.right_captions;
        let agree = self.image_agreement()?;
        if n < 10 {
            None
        } else if agree >= 0.8 {
            Some(SideConvention::Image)
        } else if agree <= 0.2 {
            Some(SideConvention::Patient)
        } else {
            None
        }
    }

    fn add(&mut self, meta: &crate::caption::CaptionMeta, centroid_x: f64) {
        let Some(z) = meta.zones else { return };
        let (left, right) = (z[..3].iter().any(|&v| v), z[3..].iter().any(|&v| v));
        if left && !right {
            self.left_captions += 1;
            self.left_on_image_left += usize::from(centroid_x < 0.5);
        } else if right && !left {
            self.right_captions += 1;
            self.right_on_image_right += usize::from(centroid_x >= 0.5);
        }
    }

    fn merge(&mut self, o: &SideEvidence) {
        self.left_captions += o.left_captions;
        self.left_on_image_left += o.left_on_image_left;
        self.right_captions += o.right_captions;
        self.right_on_image_right += o.right_on_image_right;
    }
}

/// The patient id in a file name (`sub-s10566` style BIDS subject ids), if any.
pub fn patient_id(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy();
    let start = name.find("sub-")?;
    let rest = &name[start..];
    let end = rest
        .char_indices()
        .skip(4)
        .find(|(_, c)| !c.is_ascii_alphanumeric())
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    (end > 4).then(|| rest[..end].to_string())
}

/// Report order: train, val, test, then the others by name.
fn split_rank(name: &str) -> (usize, String) {
    let r = match name {
        "train" => 0,
        "val" => 1,
        "test" => 2,
        _ => 3,
    };
    (r, name.to_string())
}

fn fmt_hist(h: &BTreeMap<i64, usize>, max: usize) -> String {
    let mut v: Vec<(&i64, &usize)> = h.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    let mut parts: Vec<String> = v
        .iter()
        .take(max)
        .map(|(k, c)| format!("{k}: {c}"))
        .collect();
    if v.len() > max {
        parts.push(format!("… {} more values", v.len() - max));
    }
    parts.join(", ")
}

/// Collects the issues of one dataset as its splits are walked.
struct Checker<'a> {
    opts: &'a CheckOptions,
    issues: Vec<Issue>,
    listing: Listing,
    referenced_dirs: BTreeSet<PathBuf>,
    referenced: BTreeSet<PathBuf>,
    image_split: HashMap<PathBuf, String>,
    non_binary_values: BTreeMap<i64, usize>,
}

/// Checks an opened dataset: one pass per check over each split, then the checks across splits.
pub fn check_dataset(ds: &Dataset, opts: &CheckOptions) -> Result<CheckReport> {
    let mut c = Checker {
        opts,
        issues: Vec::new(),
        listing: Listing {
            dirs: HashMap::new(),
        },
        referenced_dirs: BTreeSet::new(),
        referenced: BTreeSet::new(),
        image_split: HashMap::new(),
        non_binary_values: BTreeMap::new(),
    };
    if ds.is_empty() {
        c.issues.push(Issue::new(
            Severity::Error,
            IssueKind::NoSamples,
            None,
            None,
            Some(&ds.root),
            "the dataset has no samples".into(),
        ));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.workers)
        .build()
        .map_err(|e| DataError::invalid("check", format!("cannot start threads: {e}")))?;
    let mut summaries = Vec::new();
    let mut ordered: Vec<(&String, &Vec<Sample>)> = ds.splits.iter().collect();
    ordered.sort_by_key(|(name, _)| split_rank(name));
    for (split, samples) in ordered {
        let mut sum = SplitSummary {
            name: split.clone(),
            samples: samples.len(),
            with_mask: samples.iter().filter(|s| s.mask_path.is_some()).count(),
            vocabulary: Vocabulary::of(samples),
            ..Default::default()
        };
        let present = c.check_files(split, samples);
        sum.images_found = present.iter().filter(|p| p.0).count();
        sum.masks_found = present.iter().filter(|p| p.1).count();
        if opts.decode {
            let decoded = pool.install(|| decode_all(samples, &present, opts));
            c.check_decoded(split, samples, &decoded, &mut sum);
        }
        c.check_captions(split, samples);
        summaries.push(sum);
    }
    c.check_folders();
    let patients = c.check_patients(ds);
    let mut sides = SideEvidence::default();
    summaries.iter().for_each(|s| sides.merge(&s.sides));
    let laterality = c.check_sides(&sides);
    let all: Vec<Sample> = ds.splits.values().flatten().cloned().collect();
    let count = |sev| c.issues.iter().filter(|i| i.severity == sev).count();
    Ok(CheckReport {
        path: ds.root.clone(),
        format: ds.format,
        splits: summaries,
        vocabulary: Vocabulary::of(&all),
        patients_with_id: patients.0,
        patients: patients.1,
        patients_in_several_splits: patients.2,
        errors: count(Severity::Error),
        warnings: count(Severity::Warning),
        non_binary_mask_values: c.non_binary_values,
        sides,
        laterality,
        issues: c.issues,
        examples: opts.examples,
    })
}

/// Decodes every image and mask that exists (in parallel on the current pool).
fn decode_all(samples: &[Sample], present: &[(bool, bool)], opts: &CheckOptions) -> Vec<Decoded> {
    samples
        .par_iter()
        .zip(present.par_iter())
        .map(|(s, &(img_ok, mask_ok))| Decoded {
            image: img_ok.then(|| {
                read_image(&s.image_path, s.slice, &opts.decode_options)
                    .map(|p| (p.width, p.height))
            }),
            mask: match (&s.mask_path, mask_ok) {
                (Some(m), true) => Some(read_mask(m, s.slice).map(|r| MaskInfo::of(&r, s.label))),
                _ => None,
            },
        })
        .collect()
}

impl MaskInfo {
    fn of(r: &crate::imageio::RawMask, label: Option<u32>) -> Self {
        let bin = r.binarize(label);
        let fg = bin.iter().map(|&v| v as usize).sum::<usize>();
        let w = r.width.max(1);
        let sum_x: f64 = bin
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0)
            .map(|(i, _)| (i % w) as f64 + 0.5)
            .sum();
        MaskInfo {
            size: (r.width, r.height),
            binary: r.is_binary(label),
            histogram: r.histogram(),
            foreground: fg as f64 / bin.len().max(1) as f64,
            centroid_x: (fg > 0).then(|| sum_x / fg as f64 / w as f64),
        }
    }
}

impl Checker<'_> {
    fn push(
        &mut self,
        severity: Severity,
        kind: IssueKind,
        split: &str,
        s: &Sample,
        file: Option<&Path>,
        message: String,
    ) {
        self.issues.push(Issue::new(
            severity,
            kind,
            Some(split),
            Some(s),
            file,
            message,
        ));
    }

    /// Whether each sample's image and mask exist; missing folders are reported once each.
    fn check_files(&mut self, split: &str, samples: &[Sample]) -> Vec<(bool, bool)> {
        let mut missing_dirs: BTreeMap<PathBuf, usize> = BTreeMap::new();
        let mut present = Vec::with_capacity(samples.len());
        for s in samples {
            let img = self.check_file(split, s, &s.image_path, "image", &mut missing_dirs);
            let mask = match &s.mask_path {
                Some(m) => self.check_file(split, s, m, "mask", &mut missing_dirs),
                None => false,
            };
            present.push((img, mask));
        }
        for (dir, n) in missing_dirs {
            self.issues.push(Issue::new(
                Severity::Error,
                IssueKind::MissingFolder,
                Some(split),
                None,
                Some(&dir),
                format!("folder does not exist ({n} files of split `{split}` are expected in it)"),
            ));
        }
        present
    }

    fn check_file(
        &mut self,
        split: &str,
        s: &Sample,
        p: &Path,
        what: &str,
        missing_dirs: &mut BTreeMap<PathBuf, usize>,
    ) -> bool {
        if let Some(d) = p.parent() {
            self.referenced_dirs.insert(d.to_path_buf());
        }
        self.referenced.insert(p.to_path_buf());
        match self.listing.exists(p) {
            Some(true) => true,
            Some(false) => {
                let msg = match self.listing.case_variant(p) {
                    Some(v) => {
                        format!("{what} missing (a file differing only in case exists: {v})")
                    }
                    None => format!("{what} missing"),
                };
                self.push(
                    Severity::Error,
                    IssueKind::MissingFile,
                    split,
                    s,
                    Some(p),
                    msg,
                );
                false
            }
            None => {
                *missing_dirs
                    .entry(p.parent().unwrap_or(Path::new("")).to_path_buf())
                    .or_insert(0) += 1;
                false
            }
        }
    }

    /// Unreadable files, sizes, mask contents and the side evidence of the decoded samples.
    fn check_decoded(
        &mut self,
        split: &str,
        samples: &[Sample],
        decoded: &[Decoded],
        sum: &mut SplitSummary,
    ) {
        let mut fgs = Vec::new();
        for (s, d) in samples.iter().zip(decoded) {
            let mut size = None;
            match &d.image {
                Some(Ok(sz)) => {
                    sum.images_decoded += 1;
                    size = Some(*sz);
                    *sum.image_sizes
                        .entry(format!("{}x{}", sz.0, sz.1))
                        .or_insert(0) += 1;
                }
                Some(Err(e)) => {
                    let file = e.path().unwrap_or(&s.image_path).to_path_buf();
                    self.push(
                        Severity::Error,
                        IssueKind::Unreadable,
                        split,
                        s,
                        Some(&file),
                        e.detail(),
                    );
                }
                None => {}
            }
            let mpath = s.mask_path.as_deref();
            match &d.mask {
                Some(Ok(m)) => {
                    fgs.push(m.foreground);
                    self.check_mask(split, s, m, size, sum);
                }
                Some(Err(e)) => {
                    let file = e.path().or(mpath).map(Path::to_path_buf);
                    self.push(
                        Severity::Error,
                        IssueKind::Unreadable,
                        split,
                        s,
                        file.as_deref(),
                        e.detail(),
                    );
                }
                None => {}
            }
        }
        if !fgs.is_empty() {
            fgs.sort_by(|a, b| a.total_cmp(b));
            sum.foreground_median = Some(fgs[fgs.len() / 2]);
        }
    }

    fn check_mask(
        &mut self,
        split: &str,
        s: &Sample,
        m: &MaskInfo,
        size: Option<(usize, usize)>,
        sum: &mut SplitSummary,
    ) {
        let mpath = s.mask_path.as_deref();
        if let Some(cx) = m.centroid_x {
            sum.sides.add(&s.meta, cx);
        }
        if let Some(sz) = size
            && sz != m.size
        {
            let msg = format!(
                "mask is {}x{}, image is {}x{}",
                m.size.0, m.size.1, sz.0, sz.1
            );
            self.push(
                Severity::Error,
                IssueKind::SizeMismatch,
                split,
                s,
                mpath,
                msg,
            );
        }
        if !m.binary {
            sum.non_binary_masks += 1;
            for (k, c) in &m.histogram {
                *self.non_binary_values.entry(*k).or_insert(0) += c;
            }
            let msg = format!("mask values (value: pixels) {}", fmt_hist(&m.histogram, 6));
            self.push(
                Severity::Warning,
                IssueKind::NonBinaryMask,
                split,
                s,
                mpath,
                msg,
            );
        }
        if m.foreground == 0.0 {
            sum.empty_masks += 1;
            let msg = "mask has no foreground".to_string();
            self.push(
                Severity::Warning,
                IssueKind::EmptyMask,
                split,
                s,
                mpath,
                msg,
            );
        }
    }

    /// Empty, conflicting and duplicated entries, images in two splits, and what the captions say.
    fn check_captions(&mut self, split: &str, samples: &[Sample]) {
        let mut seen: HashMap<(PathBuf, Option<crate::imageio::SliceRef>), &Sample> =
            HashMap::new();
        for s in samples {
            let img = Some(s.image_path.as_path());
            if s.caption.trim().is_empty() {
                self.push(
                    Severity::Error,
                    IssueKind::EmptyCaption,
                    split,
                    s,
                    img,
                    "empty caption".into(),
                );
            }
            match seen.get(&(s.image_path.clone(), s.slice)) {
                Some(prev) if prev.caption != s.caption => {
                    let msg = format!(
                        "listed again with a different caption (first at {}): {:?} vs {:?}",
                        prev.source.location, prev.caption, s.caption
                    );
                    self.push(
                        Severity::Error,
                        IssueKind::ConflictingCaptions,
                        split,
                        s,
                        img,
                        msg,
                    );
                }
                Some(prev) => {
                    let msg = format!(
                        "listed twice with the same caption (first at {})",
                        prev.source.location
                    );
                    self.push(
                        Severity::Warning,
                        IssueKind::DuplicateEntry,
                        split,
                        s,
                        img,
                        msg,
                    );
                }
                None => {
                    seen.insert((s.image_path.clone(), s.slice), s);
                }
            }
            if let Some(other) = self.image_split.get(&s.image_path).cloned()
                && other != split
            {
                let msg = format!("the same image is also in split `{other}`");
                self.push(
                    Severity::Error,
                    IssueKind::ImageInTwoSplits,
                    split,
                    s,
                    img,
                    msg,
                );
            }
            self.image_split
                .entry(s.image_path.clone())
                .or_insert_with(|| split.to_string());
            self.check_caption_text(split, s);
        }
    }

    fn check_caption_text(&mut self, split: &str, s: &Sample) {
        let parsed = CaptionMeta::parse(&normalize_caption(&s.caption));
        if let Some(m) = parsed.laterality_contradiction() {
            let msg = format!("{m}: {:?}", s.caption);
            self.push(
                Severity::Warning,
                IssueKind::LateralityContradiction,
                split,
                s,
                None,
                msg,
            );
        }
        let mut diffs = Vec::new();
        if parsed.laterality.is_some() && s.meta.laterality != parsed.laterality {
            diffs.push(format!(
                "laterality {:?} vs caption {:?}",
                s.meta.laterality, parsed.laterality
            ));
        }
        if parsed.areas.is_some() && s.meta.areas != parsed.areas {
            diffs.push(format!(
                "infected_area {:?} vs caption {:?}",
                s.meta.areas, parsed.areas
            ));
        }
        if parsed.zones.is_some() && s.meta.zones != parsed.zones {
            diffs.push("zones (pseudo_label) differ from the zones the caption names".into());
        }
        if !diffs.is_empty() {
            self.push(
                Severity::Warning,
                IssueKind::AnnotationMismatch,
                split,
                s,
                None,
                diffs.join("; "),
            );
        }
    }

    /// Files that differ only in case, and unreferenced files, in every folder the annotations use.
    fn check_folders(&mut self) {
        for dir in self.referenced_dirs.clone() {
            let Some(entries) = self.listing.entries(&dir).cloned() else {
                continue;
            };
            let mut by_lower: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for e in &entries {
                by_lower
                    .entry(e.to_lowercase())
                    .or_default()
                    .push(e.clone());
            }
            for names in by_lower.values().filter(|v| v.len() > 1) {
                self.issues.push(Issue::new(
                    Severity::Warning,
                    IssueKind::CaseOnlyDifference,
                    None,
                    None,
                    Some(&dir.join(&names[0])),
                    format!(
                        "names differ only in case: {} (they collide on case-insensitive file systems)",
                        names.join(", ")
                    ),
                ));
            }
            let unref: Vec<&String> = entries
                .iter()
                .filter(|e| !self.referenced.contains(&dir.join(e)))
                .collect();
            if !unref.is_empty() {
                let examples: Vec<&str> = unref.iter().take(3).map(|s| s.as_str()).collect();
                let msg = format!(
                    "{} files in this folder are not in the annotations (e.g. {})",
                    unref.len(),
                    examples.join(", ")
                );
                self.issues.push(Issue::new(
                    Severity::Info,
                    IssueKind::UnreferencedFiles,
                    None,
                    None,
                    Some(&dir),
                    msg,
                ));
            }
        }
    }

    /// Patients (`sub-…` ids) with images in several splits: (images with an id, patients, shared).
    fn check_patients(&mut self, ds: &Dataset) -> (usize, usize, usize) {
        let mut patient_splits: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut with_id = 0;
        for (split, samples) in &ds.splits {
            for s in samples {
                if let Some(p) = patient_id(&s.image_path) {
                    with_id += 1;
                    patient_splits.entry(p).or_default().insert(split.clone());
                }
            }
        }
        let shared: Vec<(&String, &BTreeSet<String>)> =
            patient_splits.iter().filter(|(_, s)| s.len() > 1).collect();
        for (p, splits) in &shared {
            let msg = format!(
                "patient {p} has images in splits {} (leaks between splits inflate validation scores)",
                splits.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            self.issues.push(Issue::new(
                Severity::Warning,
                IssueKind::PatientOverlap,
                None,
                None,
                None,
                msg,
            ));
        }
        (with_id, patient_splits.len(), shared.len())
    }

    /// The side convention the masks support, and a warning when the config expects the other.
    fn check_sides(&mut self, sides: &SideEvidence) -> Option<SideConvention> {
        let found = sides.convention();
        if let (Some(found), Some(expected)) = (found, self.opts.expected_laterality)
            && found != expected
        {
            let agree = sides.image_agreement().unwrap_or(0.0);
            let share = if found == SideConvention::Image {
                agree
            } else {
                1.0 - agree
            };
            let msg = format!(
                "the masks say the captions name sides in the `{found}` convention ({} of {} one-sided captions), the config expects `{expected}`: a model trained so learns the wrong lung for \"left\"; set `laterality = \"{found}\"` in [model]",
                pct(share),
                sides.left_captions + sides.right_captions
            );
            self.issues.push(Issue::new(
                Severity::Warning,
                IssueKind::LateralityConvention,
                None,
                None,
                None,
                msg,
            ));
        }
        found
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn write_vocab(out: &mut String, v: &Vocabulary, indent: &str) {
    let _ = writeln!(
        out,
        "{indent}captions: {} ({} distinct, {} after normalisation; {} changed by normalisation, {} empty)",
        v.captions,
        v.distinct_captions,
        v.distinct_normalized,
        v.changed_by_normalization,
        v.empty_captions
    );
    let _ = writeln!(
        out,
        "{indent}words: {} in all, {} distinct, {:.1} per caption (max {})",
        v.total_words, v.distinct_words, v.mean_words, v.max_words
    );
    let _ = writeln!(
        out,
        "{indent}laterality: unilateral {}, bilateral {}, no infection {}, unknown {}",
        v.unilateral, v.bilateral, v.no_infection, v.laterality_unknown
    );
    let mut areas: Vec<(&String, &usize)> = v.infected_areas.iter().collect();
    areas.sort_by_key(|(k, _)| k.parse::<u32>().unwrap_or(u32::MAX));
    let _ = writeln!(
        out,
        "{indent}infected areas: {}",
        areas
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "{indent}zones: {}",
        ZONE_NAMES
            .iter()
            .map(|z| format!("{z} {}", v.zones.get(*z).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "{indent}top words: {}",
        v.top_words
            .iter()
            .map(|(w, n)| format!("{w} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (c, n) in v.top_captions.iter().take(3) {
        let _ = writeln!(out, "{indent}  {n:>5} × {c:?}");
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "dataset {} (format {}): {} splits, {} samples",
            self.path.display(),
            self.format,
            self.splits.len(),
            self.splits.iter().map(|s| s.samples).sum::<usize>()
        );
        for s in &self.splits {
            write_split(&mut out, s);
        }
        let _ = writeln!(out, "\nside convention: {}", self.side_convention());
        if self.splits.len() > 1 {
            let _ = writeln!(out, "\nall splits:");
            write_vocab(&mut out, &self.vocabulary, "  ");
        }
        let _ = writeln!(
            out,
            "\npatients: {} images carry a patient id (sub-…), {} patients, {} in more than one split",
            self.patients_with_id, self.patients, self.patients_in_several_splits
        );
        if !self.non_binary_mask_values.is_empty() {
            let _ = writeln!(
                out,
                "values in non-binary masks (value: pixels): {}",
                fmt_hist(&self.non_binary_mask_values, 10)
            );
        }
        let _ = writeln!(
            out,
            "\nissues: {} errors, {} warnings",
            self.errors, self.warnings
        );
        self.write_issues(&mut out);
        let _ = writeln!(
            out,
            "\nresult: {}",
            if self.errors > 0 {
                "ERRORS (not usable for training as is)"
            } else if self.warnings > 0 {
                "OK with warnings"
            } else {
                "OK"
            }
        );
        f.write_str(&out)
    }
}

/// One split's part of the text report.
fn write_split(out: &mut String, s: &SplitSummary) {
    let _ = writeln!(
        out,
        "\nsplit {}: {} samples, {} with a mask; images found {}, masks found {}, decoded {}",
        s.name, s.samples, s.with_mask, s.images_found, s.masks_found, s.images_decoded
    );
    if !s.image_sizes.is_empty() {
        let mut sizes: Vec<(&String, &usize)> = s.image_sizes.iter().collect();
        sizes.sort_by(|a, b| b.1.cmp(a.1));
        let _ = writeln!(
            out,
            "  image sizes: {}",
            sizes
                .iter()
                .take(5)
                .map(|(k, n)| format!("{k} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(m) = s.foreground_median {
        let _ = writeln!(
            out,
            "  masks: median foreground {}, {} empty, {} not cleanly binary",
            pct(m),
            s.empty_masks,
            s.non_binary_masks
        );
    }
    if s.sides.image_agreement().is_some() {
        let _ = writeln!(
            out,
            "  sides: {} of {} \"left\"-only and {} of {} \"right\"-only captions have their mask on that side of the image",
            s.sides.left_on_image_left,
            s.sides.left_captions,
            s.sides.right_on_image_right,
            s.sides.right_captions,
        );
    }
    write_vocab(out, &s.vocabulary, "  ");
}

impl CheckReport {
    /// The side convention the masks support, in words.
    fn side_convention(&self) -> String {
        match (self.laterality, self.sides.image_agreement()) {
            (Some(SideConvention::Image), Some(a)) => format!(
                "`image`: \"left\" names the image's left half ({} of the one-sided captions' masks agree)",
                pct(a)
            ),
            (Some(SideConvention::Patient), Some(a)) => format!(
                "`patient`: \"left\" names the patient's left, on the image's right ({} of the one-sided captions' masks agree)",
                pct(1.0 - a)
            ),
            (_, Some(a)) => format!(
                "undetermined ({} of the one-sided captions' masks lie on the side the image convention predicts)",
                pct(a)
            ),
            (_, None) => "undetermined (no one-sided caption with a decoded mask)".into(),
        }
    }

    /// The issues grouped by severity and kind, with up to `examples` of each.
    fn write_issues(&self, out: &mut String) {
        let mut kinds: BTreeMap<(Severity, &str), Vec<&Issue>> = BTreeMap::new();
        for i in &self.issues {
            kinds
                .entry((i.severity, i.kind.as_str()))
                .or_default()
                .push(i);
        }
        for ((sev, kind), list) in &kinds {
            let _ = writeln!(out, "  {sev:?} {kind}: {}", list.len());
            for i in list.iter().take(self.examples.max(1)) {
                let mut line = String::from("    ");
                if let Some(p) = &i.file {
                    let _ = write!(line, "{}: ", p.display());
                }
                line.push_str(&i.message);
                if let Some(l) = &i.location {
                    let _ = write!(line, " [{l}]");
                }
                let _ = writeln!(out, "{line}");
            }
            if list.len() > self.examples.max(1) {
                let _ = writeln!(out, "    … {} more", list.len() - self.examples.max(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_ids() {
        assert_eq!(
            patient_id(Path::new("a/sub-s10566_ses-e1_run-1.png")).as_deref(),
            Some("sub-s10566")
        );
        assert_eq!(patient_id(Path::new("covid_1.png")), None);
        assert_eq!(patient_id(Path::new("sub-_x.png")), None);
    }
}
