//! The LViT (TMI 2023) layout: `{Train,Val,Test}_Folder/{img,labelcol}/` with each split's
//! `{Train,Val,Test}_text.xlsx` inside its folder or beside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::common::{DirIndex, file_name, find_ci, list_dir, name_ends_with, push_rows, stem};
use super::table::read_xlsx;
use super::{LayoutReader, Splits, canonical_split};
use crate::error::{DataError, Result};

/// Reads [`super::Format::Lvit`].
pub(super) struct LvitReader;

impl LayoutReader for LvitReader {
    /// A `.xlsx` file, or a directory with a `*_text.xlsx` beside the split folders, or a `*_Folder`
    /// holding its spreadsheet (LViT's own layout) or its `img/`, `labelcol/` folders.
    fn detect(&self, path: &Path) -> bool {
        if path.is_file() {
            return name_ends_with(path, ".xlsx");
        }
        list_dir(path).iter().any(|n| {
            let l = n.to_ascii_lowercase();
            let p = path.join(n);
            (is_lvit_sheet(n) && p.is_file())
                || (l.ends_with("_folder")
                    && p.is_dir()
                    && (list_dir(&p).iter().any(|m| is_lvit_sheet(m))
                        || find_ci(&p, "img").is_some()
                        || find_ci(&p, "labelcol").is_some()))
        })
    }

    fn read(&self, path: &Path) -> Result<(PathBuf, Splits)> {
        read_lvit(path)
    }
}

/// Whether `name` is an LViT spreadsheet (`Train_text.xlsx`; not an Excel lock file `~$…`).
fn is_lvit_sheet(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with("_text.xlsx") && !name.starts_with("~$")
}

/// The split of an LViT spreadsheet's name: `Train` for `Train_text.xlsx` (else the file stem).
fn lvit_split_of(name: &str) -> String {
    if is_lvit_sheet(name) {
        name[..name.len() - "_text.xlsx".len()].to_string()
    } else {
        stem(name).to_string()
    }
}

/// Whether `dir` is an LViT split folder: named `*_Folder`, or holding `img/` or `labelcol/`.
fn is_lvit_split_folder(dir: &Path) -> bool {
    file_name(dir).to_ascii_lowercase().ends_with("_folder")
        || find_ci(dir, "img").is_some()
        || find_ci(dir, "labelcol").is_some()
}

/// The folder of split `split_raw` under `root`: `{split}_Folder` (any case); a `root` that is itself a
/// split folder (has `img/` or `labelcol/`) when there is none; else `root/{split}_Folder` (reported
/// missing by the checks).
fn lvit_folder(root: &Path, split_raw: &str) -> PathBuf {
    let name = format!("{split_raw}_Folder");
    find_ci(root, &name)
        .filter(|p| p.is_dir())
        .or_else(|| {
            (find_ci(root, "img").is_some() || find_ci(root, "labelcol").is_some())
                .then(|| root.to_path_buf())
        })
        .unwrap_or_else(|| root.join(name))
}

/// An LViT split: its name as written (`Train`), its spreadsheet and its folder.
struct LvitSplit {
    name: String,
    sheet: PathBuf,
    folder: PathBuf,
}

/// The spreadsheets of an LViT dataset by canonical split. Inside the split folder
/// (`ROOT/Train_Folder/Train_text.xlsx`, where LViT's `train_model.py` reads it) or beside it
/// (`ROOT/Train_text.xlsx`); a split with both uses the one inside.
fn lvit_sheets(root: &Path) -> BTreeMap<String, Vec<LvitSplit>> {
    let mut by_split: BTreeMap<String, Vec<LvitSplit>> = BTreeMap::new();
    let entries = list_dir(root);
    for n in &entries {
        let p = root.join(n);
        if is_lvit_sheet(n) && p.is_file() {
            let name = lvit_split_of(n);
            by_split
                .entry(canonical_split(&name))
                .or_default()
                .push(LvitSplit {
                    folder: lvit_folder(root, &name),
                    sheet: p,
                    name,
                });
        }
    }
    for n in &entries {
        let folder = root.join(n);
        if !n.to_ascii_lowercase().ends_with("_folder") || !folder.is_dir() {
            continue;
        }
        let name = n[..n.len() - "_folder".len()].to_string();
        if let Some(sheet) = find_ci(&folder, &format!("{name}_text.xlsx")).filter(|p| p.is_file())
        {
            by_split.insert(
                canonical_split(&name),
                vec![LvitSplit {
                    name,
                    sheet,
                    folder,
                }],
            );
        }
    }
    by_split
}

fn read_lvit(path: &Path) -> Result<(PathBuf, Splits)> {
    let (root, sheets): (PathBuf, Vec<LvitSplit>) = if path.is_file() {
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = lvit_split_of(&file_name(path));
        let sheet = path.to_path_buf();
        if is_lvit_split_folder(&parent) {
            // A spreadsheet inside its split folder: the dataset root is the folder's parent.
            let root = parent.parent().map(Path::to_path_buf).unwrap_or_default();
            let split = LvitSplit {
                name,
                sheet,
                folder: parent,
            };
            (root, vec![split])
        } else {
            let folder = lvit_folder(&parent, &name);
            let split = LvitSplit {
                name,
                sheet,
                folder,
            };
            (parent, vec![split])
        }
    } else {
        let sheets = lvit_sheets(path).into_values().flatten().collect();
        (path.to_path_buf(), sheets)
    };
    if sheets.is_empty() {
        return Err(DataError::layout(
            &root,
            "LViT layout: no {Train,Val,Test}_text.xlsx spreadsheet found, neither inside \
             the {Train,Val,Test}_Folder/ folders nor beside them",
        ));
    }
    let mut index = DirIndex::default();
    let mut splits = BTreeMap::new();
    for sp in sheets {
        let table = read_xlsx(&sp.sheet)?;
        let img_dir = find_ci(&sp.folder, "img").unwrap_or_else(|| sp.folder.join("img"));
        let mask_dir =
            find_ci(&sp.folder, "labelcol").unwrap_or_else(|| sp.folder.join("labelcol"));
        push_rows(
            &mut splits,
            &sp.name,
            (&table, &table.rows),
            &["Image", "image", "Image_name", "Filename"],
            &mut index,
            (&img_dir, &mask_dir),
        )?;
    }
    Ok((root, splits))
}
