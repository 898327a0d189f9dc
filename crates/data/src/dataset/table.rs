//! The tables of the LViT, GuideDecoder and manifest layouts: xlsx (first sheet) and CSV, read into header
//! and text cells with their row numbers so that errors can name the row.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// A table read from xlsx or CSV: header names and rows of text cells with their 1-based row numbers
/// (the header is row 1 in a spreadsheet; for CSV the line number).
pub(super) struct Table {
    /// The file, named in errors.
    pub(super) path: PathBuf,
    /// Header cells, trimmed.
    pub(super) header: Vec<String>,
    /// Rows after the header, blank rows left out.
    pub(super) rows: Vec<Row>,
}

/// A table row: its 1-based row (or line) number and its cells.
pub(super) type Row = (usize, Vec<String>);

impl Table {
    /// The first column whose header is one of `names` (case-insensitive).
    pub(super) fn col(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|n| {
            self.header
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(n))
        })
    }

    /// [`Table::col`], or an error naming the first of `names` and the columns there are.
    pub(super) fn require(&self, names: &[&str]) -> Result<usize> {
        self.col(names).ok_or_else(|| DataError::MissingColumn {
            path: self.path.clone(),
            column: names[0].to_string(),
            found: self.header.clone(),
        })
    }
}

/// Reads the first sheet of a spreadsheet; cells become text (whole floats without `.0`).
pub(super) fn read_xlsx(path: &Path) -> Result<Table> {
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
pub(super) fn read_csv(path: &Path) -> Result<Table> {
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

/// The trimmed cell of `row` in column `col` (empty when absent).
pub(super) fn get(row: &[String], col: Option<usize>) -> String {
    col.and_then(|c| row.get(c))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
