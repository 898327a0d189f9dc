//! Helpers the layout readers share: file names and stems, case-insensitive lookups, a cache of directory
//! listings, and the image/mask pairing of `Image` + `Description` tables.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::table::{Row, Table, get};
use super::{Sample, SourceRef, Splits, canonical_split};
use crate::caption::{CaptionMeta, normalize_caption};
use crate::error::Result;

/// The last component of `p` (empty when it has none).
pub(super) fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether the file name of `path` ends with `suffix` (given in lower case), ignoring ASCII case.
pub(super) fn name_ends_with(path: &Path, suffix: &str) -> bool {
    file_name(path).to_ascii_lowercase().ends_with(suffix)
}

/// A file name without its extension (`.nii.gz` counts as one).
pub(super) fn stem(name: &str) -> &str {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".nii.gz") {
        &name[..name.len() - 7]
    } else {
        match name.rfind('.') {
            Some(i) if i > 0 => &name[..i],
            _ => name,
        }
    }
}

/// Sorted names of the entries of a directory (empty when it cannot be read).
pub(super) fn list_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The entry of `dir` named `name`, compared case-insensitively (exact match preferred).
pub(super) fn find_ci(dir: &Path, name: &str) -> Option<PathBuf> {
    let exact = dir.join(name);
    if exact.exists() {
        return Some(exact);
    }
    list_dir(dir)
        .into_iter()
        .find(|n| n.eq_ignore_ascii_case(name))
        .map(|n| dir.join(n))
}

/// Caches directory listings for existence tests of many files.
#[derive(Default)]
pub(super) struct DirIndex {
    dirs: HashMap<PathBuf, HashSet<String>>,
}

impl DirIndex {
    pub(super) fn names(&mut self, dir: &Path) -> &HashSet<String> {
        self.dirs
            .entry(dir.to_path_buf())
            .or_insert_with(|| list_dir(dir).into_iter().collect())
    }

    pub(super) fn has(&mut self, dir: &Path, name: &str) -> bool {
        self.names(dir).contains(name)
    }

    /// The first candidate (dir, name) that exists, else the first candidate.
    pub(super) fn resolve(&mut self, candidates: &[(PathBuf, String)]) -> PathBuf {
        self.find(candidates).unwrap_or_else(|| {
            candidates
                .first()
                .map(|(d, n)| d.join(n))
                .unwrap_or_default()
        })
    }

    /// The first candidate (dir, name) that exists.
    pub(super) fn find(&mut self, candidates: &[(PathBuf, String)]) -> Option<PathBuf> {
        candidates
            .iter()
            .find(|(d, n)| self.has(d, n))
            .map(|(d, n)| d.join(n))
    }

    /// The first file (in name order) of `dir` whose stem is `stem`, with any extension.
    pub(super) fn with_stem(&mut self, dir: &Path, wanted: &str) -> Option<PathBuf> {
        self.names(dir)
            .iter()
            .filter(|n| stem(n) == wanted && n.as_str() != wanted)
            .min()
            .map(|n| dir.join(n))
    }
}

/// `NAME.png` for `mask_NAME.png` (any case of the prefix), else the name as it is.
pub(super) fn strip_mask_prefix(name: &str) -> &str {
    for p in ["mask_", "Mask_", "MASK_"] {
        if let Some(s) = name.strip_prefix(p) {
            return s;
        }
    }
    name
}

/// Image and mask paths for a name from an `Image` column that may name either file.
pub(super) fn resolve_pair(
    index: &mut DirIndex,
    img_dir: &Path,
    mask_dir: &Path,
    name: &str,
) -> (PathBuf, PathBuf) {
    let bare = strip_mask_prefix(name).to_string();
    let masked = format!("mask_{bare}");
    let image_candidates = [
        (img_dir.to_path_buf(), bare.clone()),
        (img_dir.to_path_buf(), name.to_string()),
    ];
    // The image under the named file, else under the same stem with another extension (LViT's MoNuSeg:
    // `img/NAME.tif`, `labelcol/NAME.png`, the sheet naming the `.png`).
    let image = index
        .find(&image_candidates)
        .or_else(|| index.with_stem(img_dir, stem(&bare)))
        .unwrap_or_else(|| img_dir.join(&bare));
    let mask = index.resolve(&[
        (mask_dir.to_path_buf(), name.to_string()),
        (mask_dir.to_path_buf(), masked),
        (mask_dir.to_path_buf(), bare),
    ]);
    (image, mask)
}

/// The structured content parsed from a caption (after normalisation).
pub(super) fn meta_for(caption: &str) -> CaptionMeta {
    CaptionMeta::parse(&normalize_caption(caption))
}

/// Adds a sample to its split, under the split's canonical name.
pub(super) fn push(splits: &mut Splits, split: &str, s: Sample) {
    splits.entry(canonical_split(split)).or_default().push(s);
}

/// One sample per row of an `Image` + `Description` table (LViT xlsx, GuideDecoder CSV); the image
/// column (found under one of `image_columns`) may name the image or its `mask_` file.
pub(super) fn push_rows(
    splits: &mut Splits,
    split: &str,
    (table, rows): (&Table, &[Row]),
    image_columns: &[&str],
    index: &mut DirIndex,
    (img_dir, mask_dir): (&Path, &Path),
) -> Result<()> {
    let c_img = table.require(image_columns)?;
    let c_txt = table.require(&["Description", "Text", "Caption"])?;
    for (row_no, row) in rows {
        let img_name = get(row, Some(c_img));
        let caption = row.get(c_txt).cloned().unwrap_or_default();
        let (image, mask) = resolve_pair(index, img_dir, mask_dir, &img_name);
        push(
            splits,
            split,
            Sample {
                id: stem(strip_mask_prefix(&img_name)).to_string(),
                image_path: image,
                mask_path: Some(mask),
                slice: None,
                label: None,
                meta: meta_for(&caption),
                caption,
                source: SourceRef {
                    file: table.path.clone(),
                    location: format!("row {row_no}"),
                },
            },
        );
    }
    Ok(())
}
