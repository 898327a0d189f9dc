//! Our manifest layout: one or more CSV files with columns `image,mask,text` and optional `split`, `id`,
//! `slice`, `axis`, `label`; a NIfTI volume becomes one sample per slice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::common::{file_name, list_dir, meta_for, name_ends_with, push, stem};
use super::table::{get, read_csv};
use super::{LayoutReader, Sample, SourceRef, Splits};
use crate::error::{DataError, Result};
use crate::imageio::SliceRef;
use crate::nifti;

/// Reads [`super::Format::Manifest`].
pub(super) struct ManifestReader;

impl LayoutReader for ManifestReader {
    /// A `.csv` file, or a directory holding one.
    fn detect(&self, path: &Path) -> bool {
        if path.is_file() {
            return name_ends_with(path, ".csv");
        }
        list_dir(path)
            .iter()
            .any(|n| n.to_ascii_lowercase().ends_with(".csv"))
    }

    fn read(&self, path: &Path) -> Result<(PathBuf, Splits)> {
        read_manifest(path)
    }
}

/// Parses a slice list: `12`, `3;5;7-9` (also `,` or spaces as separators).
pub fn parse_slice_list(s: &str) -> std::result::Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s
        .split([';', ',', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if let Some((a, b)) = part.split_once('-') {
            let a: usize = a
                .trim()
                .parse()
                .map_err(|_| format!("bad slice range `{part}`"))?;
            let b: usize = b
                .trim()
                .parse()
                .map_err(|_| format!("bad slice range `{part}`"))?;
            if b < a {
                return Err(format!("bad slice range `{part}` (end before start)"));
            }
            out.extend(a..=b);
        } else {
            out.push(
                part.parse()
                    .map_err(|_| format!("bad slice index `{part}`"))?,
            );
        }
    }
    Ok(out)
}

fn read_manifest(path: &Path) -> Result<(PathBuf, Splits)> {
    let (root, files): (PathBuf, Vec<PathBuf>) = if path.is_file() {
        let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
        (root, vec![path.to_path_buf()])
    } else {
        let files: Vec<PathBuf> = list_dir(path)
            .into_iter()
            .filter(|n| n.to_ascii_lowercase().ends_with(".csv"))
            .map(|n| path.join(n))
            .collect();
        (path.to_path_buf(), files)
    };
    if files.is_empty() {
        return Err(DataError::layout(&root, "manifest: no CSV file found"));
    }
    let mut splits = BTreeMap::new();
    for file in files {
        let table = read_csv(&file)?;
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let c_img = table.require(&["image", "image_path", "img"])?;
        let c_txt = table.require(&["text", "caption", "description"])?;
        let c_mask = table.col(&["mask", "mask_path", "label_path", "gt"]);
        let c_split = table.col(&["split"]);
        let c_id = table.col(&["id"]);
        let c_slice = table.col(&["slice", "slices", "frame"]);
        let c_axis = table.col(&["axis"]);
        let c_label = table.col(&["label"]);
        let file_split = stem(&file_name(&file)).to_string();
        for (row_no, row) in &table.rows {
            let loc = |col: &str| format!("row {row_no}, column `{col}`");
            let image_rel = get(row, Some(c_img));
            if image_rel.is_empty() {
                return Err(DataError::table(&file, loc("image"), "empty image path"));
            }
            let image_path = dir.join(&image_rel);
            let mask_rel = get(row, c_mask);
            let mask_path = (!mask_rel.is_empty()).then(|| dir.join(&mask_rel));
            let caption = row.get(c_txt).cloned().unwrap_or_default();
            let split = match get(row, c_split) {
                s if s.is_empty() => file_split.clone(),
                s => s,
            };
            let label = match get(row, c_label) {
                s if s.is_empty() => None,
                s => Some(s.parse::<u32>().map_err(|_| {
                    DataError::table(&file, loc("label"), format!("`{s}` is not a label number"))
                })?),
            };
            let axis = match get(row, c_axis) {
                s if s.is_empty() => 2u8,
                s => match s.parse::<u8>() {
                    Ok(a) if a <= 2 => a,
                    _ => {
                        return Err(DataError::table(
                            &file,
                            loc("axis"),
                            format!("`{s}` is not 0, 1 or 2"),
                        ));
                    }
                },
            };
            let slices = match get(row, c_slice) {
                s if s.is_empty() => None,
                s => Some(
                    parse_slice_list(&s).map_err(|m| DataError::table(&file, loc("slice"), m))?,
                ),
            };
            let base_id = match get(row, c_id) {
                s if s.is_empty() => stem(&file_name(&image_path)).to_string(),
                s => s,
            };
            let is_volume = nifti::is_nifti_path(&image_path);
            let slice_list: Vec<Option<SliceRef>> = match (slices, is_volume) {
                (Some(list), _) => list
                    .into_iter()
                    .map(|index| Some(SliceRef { axis, index }))
                    .collect(),
                (None, false) => vec![None],
                (None, true) => volume_slices(&image_path, mask_path.as_deref(), axis, label),
            };
            let meta = meta_for(&caption);
            let multi = slice_list.len() > 1 || is_volume;
            for slice in slice_list {
                let id = match (slice, multi) {
                    (Some(s), true) => format!("{base_id}#z{}", s.index),
                    _ => base_id.clone(),
                };
                push(
                    &mut splits,
                    &split,
                    Sample {
                        id,
                        image_path: image_path.clone(),
                        mask_path: mask_path.clone(),
                        slice,
                        label,
                        caption: caption.clone(),
                        meta: meta.clone(),
                        source: SourceRef {
                            file: file.clone(),
                            location: format!("row {row_no}"),
                        },
                    },
                );
            }
        }
    }
    Ok((root, splits))
}

/// The slices of a NIfTI volume to use: those with a non-empty mask, else all. A volume that cannot be
/// read yields slice 0 only, so that the error surfaces (with the file name) in checks and loading.
fn volume_slices(
    image: &Path,
    mask: Option<&Path>,
    axis: u8,
    label: Option<u32>,
) -> Vec<Option<SliceRef>> {
    let one = vec![Some(SliceRef { axis, index: 0 })];
    let indices = match mask {
        Some(m) if nifti::is_nifti_path(m) => match nifti::cached_volume(m) {
            Ok(v) => v.nonempty_slices(axis as usize, label),
            Err(_) => return one,
        },
        _ => match nifti::cached_volume(image) {
            Ok(v) => (0..v.n_slices(axis as usize)).collect(),
            Err(_) => return one,
        },
    };
    indices
        .into_iter()
        .map(|index| Some(SliceRef { axis, index }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_lists() {
        assert_eq!(parse_slice_list("3;5;7-9").unwrap(), vec![3, 5, 7, 8, 9]);
        assert_eq!(parse_slice_list(" 12 ").unwrap(), vec![12]);
        assert!(parse_slice_list("9-7").is_err());
        assert!(parse_slice_list("x").is_err());
    }
}
