//! The SGSeg (MICCAI 2024) layout: `prompts/annotation.json` with the images and masks of each split
//! under `images/{split}/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::common::{meta_for, name_ends_with, push, stem, strip_mask_prefix};
use super::{LayoutReader, Sample, SourceRef, Splits};
use crate::caption::Laterality;
use crate::error::{DataError, Result};

/// Reads [`super::Format::SgSeg`].
pub(super) struct SgSegReader;

impl LayoutReader for SgSegReader {
    /// An `annotation.json` (any `.json` file), or a directory holding `prompts/annotation.json`.
    fn detect(&self, path: &Path) -> bool {
        if path.is_file() {
            return name_ends_with(path, ".json");
        }
        path.join("prompts").join("annotation.json").is_file()
    }

    fn read(&self, path: &Path) -> Result<(PathBuf, Splits)> {
        read_sgseg(path)
    }
}

fn read_sgseg(path: &Path) -> Result<(PathBuf, Splits)> {
    let (root, json_path) = if path.is_file() {
        let root = path
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        (root, path.to_path_buf())
    } else {
        (
            path.to_path_buf(),
            path.join("prompts").join("annotation.json"),
        )
    };
    let bytes = std::fs::read(&json_path).map_err(|e| DataError::io(&json_path, e))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        DataError::table(
            &json_path,
            format!("line {}, column {}", e.line(), e.column()),
            format!("invalid JSON: {e}"),
        )
    })?;
    let obj = value.as_object().ok_or_else(|| {
        DataError::table(
            &json_path,
            "top level",
            "expected an object of splits, e.g. {\"train\": [...], \"valid\": [...]}",
        )
    })?;
    let mut splits = BTreeMap::new();
    for (key, entries) in obj {
        let Some(entries) = entries.as_array() else {
            continue;
        };
        let img_dir = root.join("images").join(key).join("images");
        let mask_dir = root.join("images").join(key).join("masks");
        for (i, e) in entries.iter().enumerate() {
            let loc = format!("{key}[{i}]");
            let field_str = |f: &str| -> Result<String> {
                match e.get(f) {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(other) => Err(DataError::table(
                        &json_path,
                        format!("{loc}.{f}"),
                        format!("expected a string, found {other}"),
                    )),
                    None => Err(DataError::table(
                        &json_path,
                        &loc,
                        format!("missing key `{f}`"),
                    )),
                }
            };
            let name = field_str("image_path")?;
            let caption = field_str("caption")?;
            let (image_name, mask_name) = if strip_mask_prefix(&name) != name {
                (strip_mask_prefix(&name).to_string(), name.clone())
            } else {
                (name.clone(), format!("mask_{name}"))
            };
            let mut meta = meta_for(&caption);
            if let Some(v) = e.get("pulmonary_infection").and_then(|v| v.as_i64()) {
                meta.laterality = match v {
                    0 => Some(Laterality::None),
                    1 => Some(Laterality::Unilateral),
                    2 => Some(Laterality::Bilateral),
                    _ => meta.laterality,
                };
            }
            if let Some(v) = e.get("infected_area").and_then(|v| v.as_u64()) {
                meta.areas = Some(v as u32);
            }
            if let Some(arr) = e.get("pseudo_label").and_then(|v| v.as_array())
                && arr.len() == 6
            {
                meta.zones = Some(std::array::from_fn(|k| {
                    arr[k].as_f64().is_some_and(|x| x != 0.0) || arr[k].as_bool() == Some(true)
                }));
            }
            push(
                &mut splits,
                key,
                Sample {
                    id: stem(&image_name).to_string(),
                    image_path: img_dir.join(&image_name),
                    mask_path: Some(mask_dir.join(&mask_name)),
                    slice: None,
                    label: None,
                    caption,
                    meta,
                    source: SourceRef {
                        file: json_path.clone(),
                        location: loc,
                    },
                },
            );
        }
    }
    Ok((root, splits))
}
