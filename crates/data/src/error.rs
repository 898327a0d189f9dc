//! Errors of the data crate. Every variant names the file it is about, and the row, column or key where
//! that applies, so that a user can fix the input without reading our code.

use std::path::PathBuf;

/// Errors of the data crate.
///
/// Displayed as `FILE: DETAIL`, naming the file once ([`DataError::detail`] is the part after the
/// file). An I/O error's OS message is part of that text and the error has no [`std::error::Error`]
/// source, so that a report printing the whole chain (anyhow's `{:#}`) does not repeat it; the
/// [`std::io::Error`] itself is [`DataError::io_error`].
#[derive(Debug)]
pub enum DataError {
    /// An I/O error (missing file, permission, truncated read).
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A file that could not be decoded as an image (PNG, JPEG, DICOM, NIfTI).
    Image {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A malformed table or annotation file (CSV, xlsx, JSON); `location` is e.g. "row 12, column `text`".
    Table {
        /// The file.
        path: PathBuf,
        /// Where in the file, e.g. "row 12, column `text`".
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A required column is missing from a table.
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: String,
        /// The columns the table has.
        found: Vec<String>,
    },
    /// The dataset layout could not be recognised, or a forced format does not match.
    Layout {
        /// The dataset root or annotation file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A split name that the dataset does not have.
    NoSplit {
        /// The dataset root.
        path: PathBuf,
        /// The split asked for.
        split: String,
        /// The splits the dataset has.
        available: Vec<String>,
    },
    /// An image and its mask have different sizes (the error is about the mask).
    SizeMismatch {
        /// The image file.
        image: PathBuf,
        /// The mask file.
        mask: PathBuf,
        /// The image's (width, height).
        image_size: (usize, usize),
        /// The mask's (width, height).
        mask_size: (usize, usize),
    },
    /// A sample that has no mask where one is required (training; the error is about the image).
    NoMask {
        /// The sample id.
        id: String,
        /// The image file.
        image: PathBuf,
    },
    /// An invalid option value (e.g. an unknown format name).
    Invalid {
        /// The option.
        what: String,
        /// Why the value is not accepted.
        message: String,
    },
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path() {
            Some(p) => write!(f, "{}: {}", p.display(), self.detail()),
            None => f.write_str(&self.detail()),
        }
    }
}

impl std::error::Error for DataError {}

/// Result with [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn image(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Image {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn table(
        path: impl Into<PathBuf>,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        DataError::Table {
            path: path.into(),
            location: location.into(),
            message: message.into(),
        }
    }

    pub(crate) fn layout(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Layout {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        DataError::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }

    /// The file this error is about, when there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            DataError::Io { path, .. }
            | DataError::Image { path, .. }
            | DataError::Table { path, .. }
            | DataError::MissingColumn { path, .. }
            | DataError::Layout { path, .. }
            | DataError::NoSplit { path, .. } => Some(path),
            DataError::SizeMismatch { mask, .. } => Some(mask),
            DataError::NoMask { image, .. } => Some(image),
            DataError::Invalid { .. } => None,
        }
    }

    /// The message without the file name: what follows `FILE: ` in the displayed error. Reports that
    /// show the file in a column of its own (`data check`) use this, not the whole error.
    pub fn detail(&self) -> String {
        match self {
            DataError::Io { error, .. } => error.to_string(),
            DataError::Image { message, .. } => format!("cannot decode image: {message}"),
            DataError::Table {
                location, message, ..
            } => format!("{location}: {message}"),
            DataError::MissingColumn { column, found, .. } => {
                format!("missing column `{column}` (columns found: {found:?})")
            }
            DataError::Layout { message, .. } => message.clone(),
            DataError::NoSplit {
                split, available, ..
            } => format!("no split `{split}` (splits: {available:?})"),
            DataError::SizeMismatch {
                image,
                image_size,
                mask_size,
                ..
            } => format!(
                "mask is {mask_size:?} (width, height), image {} is {image_size:?}",
                image.display()
            ),
            DataError::NoMask { id, .. } => format!("sample `{id}` has no mask"),
            DataError::Invalid { what, message } => format!("invalid {what}: {message}"),
        }
    }

    /// The underlying I/O error of [`DataError::Io`] (e.g. to test for `NotFound`).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            DataError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_named_once_and_no_repeated_source() {
        let p = PathBuf::from("dir/nope.png");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = DataError::io(&p, io);
        assert_eq!(e.to_string(), "dir/nope.png: gone");
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(e.io_error().unwrap().kind(), std::io::ErrorKind::NotFound);
        let t = DataError::table(&p, "row 3", "bad");
        assert_eq!(t.to_string(), format!("dir/nope.png: {}", t.detail()));
        assert_eq!(
            DataError::invalid("format", "`x`").to_string(),
            "invalid format: `x`"
        );
    }
}
