//! Datasets: the four layouts users bring, detected from the directory (or forced), read into one
//! model: named splits of [`Sample`]s (image path, optional mask path, optional slice, caption and its
//! structured content).
//!
//! | format | layout |
//! |---|---|
//! | [`Format::SgSeg`] | `images/{split}/images/NAME.png`, `images/{split}/masks/mask_NAME.png`, `prompts/annotation.json` = `{"train": [{"image_path": "mask_NAME.png", "caption": …, "pulmonary_infection": 1\|2, "infected_area": n, "pseudo_label": [6 flags]}, …], "valid": […]}` |
//! | [`Format::Lvit`] | `{Train,Val,Test}_Folder/{img,labelcol}/` with each split's spreadsheet `{Train,Val,Test}_text.xlsx` inside its folder (as LViT's `Config.py`/`train_model.py` read it: `Train_Folder/Train_text.xlsx`) or beside the folders; inside wins when a split has both. First sheet, columns `Image`, `Description`. `Image` names the mask file: QaTa-COV19 `mask_NAME.png` (image `img/NAME.png`, mask `labelcol/mask_NAME.png`), MosMedData+ `NAME.png` (image and mask both `NAME.png`); an image stored with another extension (MoNuSeg's `.tif`) is found by its stem |
//! | [`Format::GuideDecoder`] | `prompt/{train,test}.csv` (`Image,Description`; `Image` = `mask_NAME.png`) with `Train/{Images,GTs}/` and `Test/{Images,GTs}/` (LanGuideMedSeg's `training.yaml`; folder names matched case-insensitively), or `Train Set/…`, `Test Set/…`, or flat `Images/`, `GTs/`; image `Images/NAME.png`, mask `GTs/mask_NAME.png`. Without a `val`/`valid` CSV, train.csv is split by row order as LanGuideMedSeg does: the first `int(0.8·n)` rows are `train`, the rest `val` |
//! | [`Format::Manifest`] | one or more CSV files with columns `image,mask,text` (paths relative to the CSV; `mask` may be empty or absent for inference) and optional `split`, `id`, `slice`, `axis`, `label` |
//!
//! Split names are canonical: `train`, `val` (from val/valid/validation/dev), `test`; others are kept in
//! lower case. In a manifest the split is the `split` cell, else the CSV's file stem.
//!
//! CT in a manifest: `image` may be a DICOM file (`slice` picks frames of a multi-frame file) or a NIfTI
//! volume: one sample per slice along `axis` (default 2), for the slices listed in `slice`
//! (`12`, `3;5;7-9`), else every slice whose mask is non-empty (the mask volume is read when the dataset
//! is opened), else every slice. `label` picks one label of a multi-label mask (default: any nonzero).
//!
//! Opening is lenient about the files themselves: missing or unreadable images are reported by
//! [`crate::check`] and, at load time, by the loader's bad-sample policy. Malformed annotation files
//! (bad JSON, missing columns, non-UTF-8 text) are errors naming the file and row.
//!
//! Each layout has one reader behind the small `LayoutReader` trait, in its own file: `dataset/sgseg.rs`,
//! `dataset/lvit.rs`, `dataset/guidedecoder.rs`, `dataset/manifest.rs`; `dataset/table.rs` reads the xlsx
//! and CSV tables they share and `dataset/common.rs` holds the path helpers. [`detect`] asks the readers in
//! [`Format::ALL`]'s order and takes the first that recognises the path.

mod common;
mod guidedecoder;
mod lvit;
mod manifest;
mod sgseg;
mod table;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use crate::caption::{CaptionMeta, normalize_caption};
use crate::error::{DataError, Result};
use crate::imageio::SliceRef;

pub use guidedecoder::guidedecoder_train_rows;
pub use manifest::parse_slice_list;

/// The dataset layouts we read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// SGSeg (MICCAI 2024) JSON layout, e.g. QaTa-COV19-v2 as published with SGSeg.
    SgSeg,
    /// LViT (TMI 2023) folders and xlsx spreadsheets.
    Lvit,
    /// GuideDecoder / LanGuideMedSeg (MICCAI 2023) folders and prompt CSVs.
    GuideDecoder,
    /// Our manifest CSV (`image,mask,text`).
    Manifest,
}

impl Format {
    /// Every format, in detection order: a directory is read as the first format whose reader
    /// recognises it.
    pub const ALL: [Format; 4] = [
        Format::SgSeg,
        Format::Lvit,
        Format::GuideDecoder,
        Format::Manifest,
    ];

    /// The format's name, as `--format` accepts it and reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Format::SgSeg => "sgseg",
            Format::Lvit => "lvit",
            Format::GuideDecoder => "guidedecoder",
            Format::Manifest => "manifest",
        }
    }

    fn reader(self) -> &'static dyn LayoutReader {
        match self {
            Format::SgSeg => &sgseg::SgSegReader,
            Format::Lvit => &lvit::LvitReader,
            Format::GuideDecoder => &guidedecoder::GuideDecoderReader,
            Format::Manifest => &manifest::ManifestReader,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Format> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "sgseg" | "sgsegjson" | "json" => Ok(Format::SgSeg),
            "lvit" | "xlsx" => Ok(Format::Lvit),
            "guidedecoder" | "guide" | "languide" | "languidemedseg" => Ok(Format::GuideDecoder),
            "manifest" | "csv" => Ok(Format::Manifest),
            _ => Err(DataError::invalid(
                "format",
                format!("`{s}` (expected sgseg, lvit, guidedecoder or manifest)"),
            )),
        }
    }
}

/// Where a sample was defined: the annotation file and a location in it ("row 12", "train[3]").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceRef {
    /// The annotation file.
    pub file: PathBuf,
    /// Where in it, e.g. "row 12" or "train[3]".
    pub location: String,
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.location)
    }
}

/// One image (or slice) with its mask and caption.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// Unique within a split: the image file stem (plus `#z{index}` for a volume slice).
    pub id: String,
    /// The image (or volume, or DICOM file) the sample is read from.
    pub image_path: PathBuf,
    /// `None` for an inference-only sample.
    pub mask_path: Option<PathBuf>,
    /// The slice of a NIfTI volume or frame of a DICOM file; `None` for a 2-D image.
    pub slice: Option<SliceRef>,
    /// For label-map masks: the label that is foreground (`None`: any nonzero).
    pub label: Option<u32>,
    /// The caption as published (not normalised; see [`Sample::text`]).
    pub caption: String,
    /// What the annotation states about the caption, or what was parsed from it.
    pub meta: CaptionMeta,
    /// Where the sample was defined.
    pub source: SourceRef,
}

impl Sample {
    /// The caption given to the model: [`normalize_caption`] applied when `normalize` is true.
    pub fn text(&self, normalize: bool) -> String {
        if normalize {
            normalize_caption(&self.caption)
        } else {
            self.caption.clone()
        }
    }
}

/// A dataset: its format, root directory and named splits.
#[derive(Clone, Debug, Serialize)]
pub struct Dataset {
    /// The layout it was read as.
    pub format: Format,
    /// The dataset root (image and mask paths are resolved against it).
    pub root: PathBuf,
    /// Samples per split, keyed by canonical split name ([`canonical_split`]).
    pub splits: BTreeMap<String, Vec<Sample>>,
}

/// The canonical name of a split: `train`, `val` (val/valid/validation/dev), `test`, else lower case.
pub fn canonical_split(name: &str) -> String {
    let l = name.trim().to_ascii_lowercase();
    match l.as_str() {
        "train" | "training" | "trn" => "train".into(),
        "val" | "valid" | "validation" | "dev" => "val".into(),
        "test" | "testing" | "tst" => "test".into(),
        _ => l,
    }
}

impl Dataset {
    /// Opens a dataset, detecting its format unless `format` forces one. `path` is the dataset
    /// directory, or a manifest CSV file, or an SGSeg `annotation.json`.
    pub fn open(path: &Path, format: Option<Format>) -> Result<Dataset> {
        let detected = detect(path)?;
        let format = match (format, detected) {
            (Some(f), _) => f,
            (None, Some(f)) => f,
            (None, None) => {
                return Err(DataError::layout(
                    path,
                    "unrecognised dataset layout: expected prompts/annotation.json (sgseg), \
                     *_text.xlsx (lvit), prompt/*.csv (guidedecoder) or a manifest *.csv \
                     with columns image,mask,text",
                ));
            }
        };
        let (root, splits) = format.reader().read(path)?;
        Ok(Dataset {
            format,
            root,
            splits,
        })
    }

    /// The samples of a split (aliases accepted: val/valid/validation/dev, train/training, test).
    pub fn split(&self, name: &str) -> Result<&[Sample]> {
        self.splits
            .get(&canonical_split(name))
            .map(|v| v.as_slice())
            .ok_or_else(|| DataError::NoSplit {
                path: self.root.clone(),
                split: name.to_string(),
                available: self.splits.keys().cloned().collect(),
            })
    }

    /// Total number of samples over all splits.
    pub fn len(&self) -> usize {
        self.splits.values().map(Vec::len).sum()
    }

    /// True when no split has a sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Samples by canonical split name.
type Splits = BTreeMap<String, Vec<Sample>>;

/// How one layout is recognised and read (one implementation per [`Format`], each in its own file).
trait LayoutReader {
    /// Whether `path`, an existing file or directory, is in this layout.
    fn detect(&self, path: &Path) -> bool;
    /// Reads the dataset at `path`: its root (what image paths are resolved against) and its splits.
    fn read(&self, path: &Path) -> Result<(PathBuf, Splits)>;
}

/// Detects the format of `path` (a directory or a file); `None` when nothing matches.
pub fn detect(path: &Path) -> Result<Option<Format>> {
    if !path.is_file() && !path.is_dir() {
        return Err(DataError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ));
    }
    Ok(Format::ALL.into_iter().find(|f| f.reader().detect(path)))
}

#[cfg(test)]
mod tests {
    use super::common::stem;
    use super::*;

    #[test]
    fn split_aliases_and_formats() {
        assert_eq!(canonical_split("Valid"), "val");
        assert_eq!(canonical_split("Train"), "train");
        assert_eq!(canonical_split("holdout"), "holdout");
        assert_eq!("SGSeg".parse::<Format>().unwrap(), Format::SgSeg);
        assert_eq!("languide".parse::<Format>().unwrap(), Format::GuideDecoder);
        assert!("foo".parse::<Format>().is_err());
        assert_eq!(stem("a.nii.gz"), "a");
        assert_eq!(stem("mask_x.png"), "mask_x");
    }
}
