//! The GuideDecoder / LanGuideMedSeg (MICCAI 2023) layout: `prompt/{train,test}.csv` with the images
//! and masks under `Train/{Images,GTs}/` and `Test/{Images,GTs}/` (or `Train Set/…`, or flat).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::common::{DirIndex, file_name, find_ci, list_dir, push_rows, stem};
use super::table::{Row, Table, read_csv};
use super::{LayoutReader, Splits, canonical_split};
use crate::error::{DataError, Result};

/// Reads [`super::Format::GuideDecoder`].
pub(super) struct GuideDecoderReader;

impl LayoutReader for GuideDecoderReader {
    /// A directory with a `prompt/` folder (any case) holding a CSV file.
    fn detect(&self, path: &Path) -> bool {
        if path.is_file() {
            return false;
        }
        find_ci(path, "prompt").is_some_and(|p| {
            list_dir(&p)
                .iter()
                .any(|n| n.to_ascii_lowercase().ends_with(".csv"))
        })
    }

    fn read(&self, path: &Path) -> Result<(PathBuf, Splits)> {
        read_guidedecoder(path)
    }
}

/// The folder holding `Images/` and `GTs/` for a split of a GuideDecoder dataset: the split's own folder
/// (`Train/`, as LanGuideMedSeg's `training.yaml` has it, or `Train Set/`; a `val` split without its own
/// folder is drawn from the training images, as LanGuideMedSeg's is), else `root` when it holds
/// `Images/` or `GTs/` itself, else the split's folder as published (reported missing by the checks).
fn guidedecoder_base(root: &Path, split: &str) -> PathBuf {
    let names: Vec<String> = match split {
        "train" => vec!["Train".into(), "Train Set".into(), "Training".into()],
        "test" => vec!["Test".into(), "Test Set".into(), "Testing".into()],
        "val" => [
            "Val",
            "Valid",
            "Validation",
            "Val Set",
            "Valid Set",
            "Train",
            "Train Set",
            "Training",
        ]
        .map(String::from)
        .to_vec(),
        other => vec![other.to_string()],
    };
    let has_pair = |d: &Path| find_ci(d, "Images").is_some() || find_ci(d, "GTs").is_some();
    names
        .iter()
        .filter_map(|n| find_ci(root, n))
        .find(|d| d.is_dir() && has_pair(d))
        .or_else(|| has_pair(root).then(|| root.to_path_buf()))
        .unwrap_or_else(|| match split {
            "train" | "val" => root.join("Train"),
            "test" => root.join("Test"),
            _ => root.to_path_buf(),
        })
}

/// The row where LanGuideMedSeg's `utils/dataset.py` cuts train.csv: `int(0.8 * len)` (the same
/// double-precision product and truncation as Python's).
pub fn guidedecoder_train_rows(n: usize) -> usize {
    (0.8 * n as f64) as usize
}

fn read_guidedecoder(path: &Path) -> Result<(PathBuf, Splits)> {
    let root = path.to_path_buf();
    let prompt = find_ci(&root, "prompt").ok_or_else(|| {
        DataError::layout(
            &root,
            "GuideDecoder layout: no prompt/ directory with train.csv/test.csv",
        )
    })?;
    let csvs: Vec<PathBuf> = list_dir(&prompt)
        .into_iter()
        .filter(|n| n.to_ascii_lowercase().ends_with(".csv"))
        .map(|n| prompt.join(n))
        .collect();
    if csvs.is_empty() {
        return Err(DataError::layout(
            &prompt,
            "GuideDecoder layout: no CSV file in prompt/",
        ));
    }
    let tables = csvs
        .iter()
        .map(|f| Ok((stem(&file_name(f)).to_string(), read_csv(f)?)))
        .collect::<Result<Vec<(String, Table)>>>()?;
    let has_val = tables.iter().any(|(s, _)| canonical_split(s) == "val");
    let mut index = DirIndex::default();
    let mut splits = BTreeMap::new();
    for (split_raw, table) in &tables {
        let split = canonical_split(split_raw);
        // Without a validation CSV, LanGuideMedSeg validates on the last 20 % of train.csv.
        let parts: Vec<(&str, &[Row])> = if split == "train" && !has_val {
            let (train, val) = table
                .rows
                .split_at(guidedecoder_train_rows(table.rows.len()));
            vec![("train", train), ("val", val)]
        } else {
            vec![(split_raw.as_str(), &table.rows[..])]
        };
        for (name, rows) in parts {
            let base = guidedecoder_base(&root, &canonical_split(name));
            let img_dir = find_ci(&base, "Images").unwrap_or_else(|| base.join("Images"));
            let mask_dir = find_ci(&base, "GTs").unwrap_or_else(|| base.join("GTs"));
            push_rows(
                &mut splits,
                name,
                (table, rows),
                &["Image", "image"],
                &mut index,
                (&img_dir, &mask_dir),
            )?;
        }
    }
    Ok((root, splits))
}
