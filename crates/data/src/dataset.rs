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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use crate::caption::{CaptionMeta, Laterality, normalize_caption};
use crate::error::{DataError, Result};
use crate::imageio::SliceRef;
use crate::nifti;

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
    /// Every format.
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
        let (root, splits) = match format {
            Format::SgSeg => read_sgseg(path)?,
            Format::Lvit => read_lvit(path)?,
            Format::GuideDecoder => read_guidedecoder(path)?,
            Format::Manifest => read_manifest(path)?,
        };
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

/// Detects the format of `path` (a directory or a file); `None` when nothing matches.
pub fn detect(path: &Path) -> Result<Option<Format>> {
    if path.is_file() {
        let name = file_name(path).to_ascii_lowercase();
        return Ok(if name.ends_with(".csv") {
            Some(Format::Manifest)
        } else if name.ends_with(".json") {
            Some(Format::SgSeg)
        } else if name.ends_with(".xlsx") {
            Some(Format::Lvit)
        } else {
            None
        });
    }
    if !path.is_dir() {
        return Err(DataError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ));
    }
    if path.join("prompts").join("annotation.json").is_file() {
        return Ok(Some(Format::SgSeg));
    }
    let entries = list_dir(path);
    // LViT: a `*_text.xlsx` beside the split folders, or a `*_Folder` holding its spreadsheet (LViT's own
    // layout) or its `img/`, `labelcol/` folders.
    if entries.iter().any(|n| {
        let l = n.to_ascii_lowercase();
        let p = path.join(n);
        (is_lvit_sheet(n) && p.is_file())
            || (l.ends_with("_folder")
                && p.is_dir()
                && (list_dir(&p).iter().any(|m| is_lvit_sheet(m))
                    || find_ci(&p, "img").is_some()
                    || find_ci(&p, "labelcol").is_some()))
    }) {
        return Ok(Some(Format::Lvit));
    }
    if let Some(p) = find_ci(path, "prompt")
        && list_dir(&p)
            .iter()
            .any(|n| n.to_ascii_lowercase().ends_with(".csv"))
    {
        return Ok(Some(Format::GuideDecoder));
    }
    if entries
        .iter()
        .any(|n| n.to_ascii_lowercase().ends_with(".csv"))
    {
        return Ok(Some(Format::Manifest));
    }
    Ok(None)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn stem(name: &str) -> &str {
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
fn list_dir(dir: &Path) -> Vec<String> {
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
fn find_ci(dir: &Path, name: &str) -> Option<PathBuf> {
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
struct DirIndex {
    dirs: HashMap<PathBuf, HashSet<String>>,
}

impl DirIndex {
    fn names(&mut self, dir: &Path) -> &HashSet<String> {
        self.dirs
            .entry(dir.to_path_buf())
            .or_insert_with(|| list_dir(dir).into_iter().collect())
    }

    fn has(&mut self, dir: &Path, name: &str) -> bool {
        self.names(dir).contains(name)
    }

    /// The first candidate (dir, name) that exists, else the first candidate.
    fn resolve(&mut self, candidates: &[(PathBuf, String)]) -> PathBuf {
        self.find(candidates).unwrap_or_else(|| {
            candidates
                .first()
                .map(|(d, n)| d.join(n))
                .unwrap_or_default()
        })
    }

    /// The first candidate (dir, name) that exists.
    fn find(&mut self, candidates: &[(PathBuf, String)]) -> Option<PathBuf> {
        candidates
            .iter()
            .find(|(d, n)| self.has(d, n))
            .map(|(d, n)| d.join(n))
    }

    /// The first file (in name order) of `dir` whose stem is `stem`, with any extension.
    fn with_stem(&mut self, dir: &Path, wanted: &str) -> Option<PathBuf> {
        self.names(dir)
            .iter()
            .filter(|n| stem(n) == wanted && n.as_str() != wanted)
            .min()
            .map(|n| dir.join(n))
    }
}

fn strip_mask_prefix(name: &str) -> &str {
    for p in ["mask_", "Mask_", "MASK_"] {
        if let Some(s) = name.strip_prefix(p) {
            return s;
        }
    }
    name
}

/// Image and mask paths for a name from an `Image` column that may name either file.
fn resolve_pair(
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

fn meta_for(caption: &str) -> CaptionMeta {
    CaptionMeta::parse(&normalize_caption(caption))
}

fn push(splits: &mut BTreeMap<String, Vec<Sample>>, split: &str, s: Sample) {
    splits.entry(canonical_split(split)).or_default().push(s);
}

/// One sample per row of an `Image` + `Description` table (LViT xlsx, GuideDecoder CSV); the image
/// column (found under one of `image_columns`) may name the image or its `mask_` file.
fn push_rows(
    splits: &mut BTreeMap<String, Vec<Sample>>,
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

// ---------------------------------------------------------------------------------------------------
// SGSeg JSON

fn read_sgseg(path: &Path) -> Result<(PathBuf, BTreeMap<String, Vec<Sample>>)> {
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

// ---------------------------------------------------------------------------------------------------
// Tables (xlsx, csv)

/// A table read from xlsx or CSV: header names and rows of text cells with their 1-based row numbers
/// (the header is row 1 in a spreadsheet; for CSV the line number).
struct Table {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<Row>,
}

/// A table row: its 1-based row (or line) number and its cells.
type Row = (usize, Vec<String>);

impl Table {
    fn col(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|n| {
            self.header
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(n))
        })
    }

    fn require(&self, names: &[&str]) -> Result<usize> {
        self.col(names).ok_or_else(|| DataError::MissingColumn {
            path: self.path.clone(),
            column: names[0].to_string(),
            found: self.header.clone(),
        })
    }
}

fn read_xlsx(path: &Path) -> Result<Table> {
    use calamine::{Data, Reader, open_workbook_auto};
    let mut wb = open_workbook_auto(path)
        .map_err(|e| DataError::table(path, "workbook", format!("cannot open spreadsheet: {e}")))?;
    let range = wb
        .worksheet_range_at(0)
        .ok_or_else(|| DataError::table(path, "workbook", "the workbook has no sheet"))?
        .map_err(|e| DataError::table(path, "first sheet", format!("cannot read: {e}")))?;
    let first_row = range.start().map(|(r, _)| r as usize + 1).unwrap_or(1);
    let mut rows_iter = range.rows();
    let cell = |d: &Data| -> std::result::Result<String, String> {
        match d {
            Data::Empty => Ok(String::new()),
            Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => Ok(s.clone()),
            Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(format!("{}", *f as i64)),
            Data::Float(f) => Ok(f.to_string()),
            Data::Int(i) => Ok(i.to_string()),
            Data::Bool(b) => Ok(b.to_string()),
            Data::DateTime(d) => Ok(d.to_string()),
            Data::Error(e) => Err(format!("cell error {e:?}")),
        }
    };
    let header: Vec<String> = match rows_iter.next() {
        Some(r) => r
            .iter()
            .map(|d| cell(d).unwrap_or_default().trim().to_string())
            .collect(),
        None => Vec::new(),
    };
    let mut rows = Vec::new();
    for (i, r) in rows_iter.enumerate() {
        let row_no = first_row + 1 + i;
        let mut cells = Vec::with_capacity(r.len());
        for (c, d) in r.iter().enumerate() {
            cells.push(cell(d).map_err(|m| {
                DataError::table(
                    path,
                    format!(
                        "row {row_no}, column `{}`",
                        header
                            .get(c)
                            .cloned()
                            .unwrap_or_else(|| format!("#{}", c + 1))
                    ),
                    m,
                )
            })?);
        }
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        rows.push((row_no, cells));
    }
    Ok(Table {
        path: path.to_path_buf(),
        header,
        rows,
    })
}

/// Reads a CSV (RFC 4180 quoting; a UTF-8 byte-order mark is ignored). Non-UTF-8 cells are an error
/// naming the line and column.
fn read_csv(path: &Path) -> Result<Table> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let body = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut header = Vec::new();
    let mut rows = Vec::new();
    let mut rec = csv::ByteRecord::new();
    let mut first = true;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                return Err(DataError::table(
                    path,
                    format!("line {line}"),
                    format!("malformed CSV: {e}"),
                ));
            }
        }
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        let mut cells = Vec::with_capacity(rec.len());
        for (c, field) in rec.iter().enumerate() {
            let s = std::str::from_utf8(field).map_err(|e| {
                let col = if first {
                    format!("#{}", c + 1)
                } else {
                    header
                        .get(c)
                        .cloned()
                        .unwrap_or_else(|| format!("#{}", c + 1))
                };
                DataError::table(
                    path,
                    format!("row {line}, column `{col}`"),
                    format!(
                        "text is not valid UTF-8 (invalid byte at offset {} of the cell); re-save the file as UTF-8",
                        e.valid_up_to()
                    ),
                )
            })?;
            cells.push(s.to_string());
        }
        if first {
            header = cells.iter().map(|c| c.trim().to_string()).collect();
            first = false;
        } else if !cells.iter().all(|c| c.trim().is_empty()) {
            rows.push((line, cells));
        }
    }
    Ok(Table {
        path: path.to_path_buf(),
        header,
        rows,
    })
}

fn get(row: &[String], col: Option<usize>) -> String {
    col.and_then(|c| row.get(c))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------
// LViT

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

fn read_lvit(path: &Path) -> Result<(PathBuf, BTreeMap<String, Vec<Sample>>)> {
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

// ---------------------------------------------------------------------------------------------------
// GuideDecoder / LanGuideMedSeg

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

fn read_guidedecoder(path: &Path) -> Result<(PathBuf, BTreeMap<String, Vec<Sample>>)> {
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

// ---------------------------------------------------------------------------------------------------
// Manifest CSV

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

fn read_manifest(path: &Path) -> Result<(PathBuf, BTreeMap<String, Vec<Sample>>)> {
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

    #[test]
    fn slice_lists() {
        assert_eq!(parse_slice_list("3;5;7-9").unwrap(), vec![3, 5, 7, 8, 9]);
        assert_eq!(parse_slice_list(" 12 ").unwrap(), vec![12]);
        assert!(parse_slice_list("9-7").is_err());
        assert!(parse_slice_list("x").is_err());
    }
}
