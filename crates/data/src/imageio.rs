//! Decoding of images and masks from PNG/JPEG (8/16-bit, gray or colour), DICOM and NIfTI into planar
//! `f32` buffers, with the intensity rules:
//!
//! - PNG/JPEG images: 8-bit values / 255; 16-bit values / 65535, except that a 16-bit gray image whose
//!   maximum is at most 4095 is taken as 12-bit data and divided by 4095. Colour images whose three
//!   channels are equal everywhere are reduced to one gray channel (the result is the same after the
//!   gray → 3-channel replication, and cheaper).
//! - CT (DICOM with modality CT, and every NIfTI volume): raw values are rescaled (DICOM rescale
//!   slope/intercept, NIfTI `scl_slope`/`scl_inter`) to Hounsfield units and mapped through a window
//!   ([`Window`], default lung W1500/L-600) to [0, 1]; `window: None` maps the slice's min–max instead
//!   (use that for MR). Other DICOM modalities use the file's own window, else the min–max.
//!   MONOCHROME1 DICOM images are inverted.
//! - Masks from PNG/JPEG: a mask whose maximum is 1 is a {0,1} mask (foreground = 1); otherwise
//!   foreground is a value above half the range (> 127 for 8-bit, > 32767 for 16-bit). Colour masks use
//!   the largest of the three channels (so a pure red lesion counts).
//! - Masks from DICOM/NIfTI are label maps: foreground is any nonzero stored value, or the value equal to
//!   the sample's `label` when one is given.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use image::DynamicImage;
use serde::Serialize;

use crate::dicom;
use crate::error::{DataError, Result};
use crate::nifti;

/// A decoded image, planar `f32` in [0, 1]: `data` is `[channels, height, width]`, channels 1 or 3.
#[derive(Clone, Debug, PartialEq)]
pub struct Plane {
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The values, planar.
    pub data: Vec<f32>,
}

/// Which 2-D image of a file: a slice along `axis` (0, 1, 2) of a NIfTI volume, or (axis ignored)
/// the frame `index` of a multi-frame DICOM file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SliceRef {
    /// The NIfTI axis the slice is taken across (0, 1 or 2).
    pub axis: u8,
    /// The slice or frame index.
    pub index: usize,
}

/// A CT intensity window: Hounsfield units in [center − width/2, center + width/2] map to [0, 1].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Window {
    /// Centre of the window in Hounsfield units.
    pub center: f32,
    /// Width of the window in Hounsfield units.
    pub width: f32,
}

impl Window {
    /// Lung window W1500 / L−600 (the default).
    pub const LUNG: Window = Window {
        center: -600.0,
        width: 1500.0,
    };
    /// Soft-tissue (abdomen) window W400 / L40.
    pub const ABDOMEN: Window = Window {
        center: 40.0,
        width: 400.0,
    };
    /// Mediastinum window W350 / L50.
    pub const MEDIASTINUM: Window = Window {
        center: 50.0,
        width: 350.0,
    };

    /// Maps a value in HU to [0, 1].
    pub fn apply(&self, hu: f32) -> f32 {
        ((hu - (self.center - self.width / 2.0)) / self.width).clamp(0.0, 1.0)
    }
}

/// Parses an optional window: `lung`, `abdomen`, `mediastinum`, `none` (min–max), or `W,L` in HU
/// (e.g. `1500,-600`).
pub fn parse_window(s: &str) -> Result<Option<Window>> {
    match s.trim().to_ascii_lowercase().as_str() {
        "none" | "minmax" | "min-max" => Ok(None),
        other => Window::from_str(other).map(Some),
    }
}

impl FromStr for Window {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Window> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lung" => Ok(Window::LUNG),
            "abdomen" | "soft-tissue" => Ok(Window::ABDOMEN),
            "mediastinum" => Ok(Window::MEDIASTINUM),
            other => {
                let parts: Vec<&str> = other.split(',').map(str::trim).collect();
                let bad = || {
                    DataError::invalid(
                        "window",
                        format!(
                            "`{s}`: expected lung, abdomen, mediastinum, none or WIDTH,LEVEL (e.g. 1500,-600)"
                        ),
                    )
                };
                if parts.len() != 2 {
                    return Err(bad());
                }
                let width: f32 = parts[0].parse().map_err(|_| bad())?;
                let center: f32 = parts[1].parse().map_err(|_| bad())?;
                if !(width > 0.0 && width.is_finite() && center.is_finite()) {
                    return Err(bad());
                }
                Ok(Window { center, width })
            }
        }
    }
}

/// How images are decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeOptions {
    /// The CT window; `None` maps each slice's min–max to [0, 1].
    pub window: Option<Window>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            window: Some(Window::LUNG),
        }
    }
}

/// How a mask's raw values become foreground.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum MaskKind {
    /// A PNG/JPEG mask with values in [0, `max_value`] (255 or 65535).
    Picture {
        /// The value of full foreground (255 or 65535).
        max_value: f32,
    },
    /// A DICOM/NIfTI label map.
    Label,
}

/// A decoded mask before binarisation: raw values, row-major `[height, width]`.
#[derive(Clone, Debug)]
pub struct RawMask {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The values, row-major.
    pub values: Vec<f32>,
    /// How the values become foreground.
    pub kind: MaskKind,
}

impl RawMask {
    /// Foreground flags, row-major `[height, width]`, 1 for foreground (see the module header for the
    /// rules; `label` selects one label of a DICOM/NIfTI label map).
    pub fn binarize(&self, label: Option<u32>) -> Vec<u8> {
        match self.kind {
            MaskKind::Label => self
                .values
                .iter()
                .map(|&v| match label {
                    Some(l) => (v == l as f32) as u8,
                    None => (v != 0.0) as u8,
                })
                .collect(),
            MaskKind::Picture { max_value } => {
                let max = self.values.iter().copied().fold(0.0f32, f32::max);
                let thr = if max <= 1.0 {
                    0.5
                } else {
                    (max_value / 2.0).floor()
                };
                self.values.iter().map(|&v| (v > thr) as u8).collect()
            }
        }
    }

    /// Counts of each distinct value (rounded to an integer).
    pub fn histogram(&self) -> BTreeMap<i64, usize> {
        let mut h = BTreeMap::new();
        if let MaskKind::Picture { max_value } = self.kind
            && max_value <= 255.0
        {
            let mut counts = [0usize; 256];
            for &v in &self.values {
                counts[v.clamp(0.0, 255.0) as usize] += 1;
            }
            for (v, &c) in counts.iter().enumerate() {
                if c > 0 {
                    h.insert(v as i64, c);
                }
            }
            return h;
        }
        for &v in &self.values {
            *h.entry(v.round() as i64).or_insert(0) += 1;
        }
        h
    }

    /// Whether the mask is cleanly binary: values in {0, max} or {0, 1} for pictures, at most one
    /// nonzero label for label maps (unless `label` picks one).
    pub fn is_binary(&self, label: Option<u32>) -> bool {
        let h = self.histogram();
        let nonzero: Vec<i64> = h.keys().copied().filter(|&v| v != 0).collect();
        match self.kind {
            MaskKind::Picture { max_value } => {
                nonzero.is_empty()
                    || (nonzero.len() == 1 && (nonzero[0] == 1 || nonzero[0] == max_value as i64))
            }
            MaskKind::Label => label.is_some() || nonzero.len() <= 1,
        }
    }
}

enum Source {
    Nifti,
    Dicom(Vec<u8>),
    Picture(Vec<u8>),
}

fn open_source(path: &Path) -> Result<Source> {
    if nifti::is_nifti_path(path) {
        return Ok(Source::Nifti);
    }
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if dicom::is_dicom_path(path) || dicom::has_dicom_magic(&bytes) {
        Ok(Source::Dicom(bytes))
    } else {
        Ok(Source::Picture(bytes))
    }
}

fn decode_picture(path: &Path, bytes: &[u8]) -> Result<DynamicImage> {
    image::load_from_memory(bytes).map_err(|e| DataError::image(path, e.to_string()))
}

fn nifti_slice(path: &Path, slice: Option<SliceRef>) -> Result<(Arc<nifti::Volume>, SliceRef)> {
    let vol = nifti::cached_volume(path)?;
    let s = match slice {
        Some(s) => s,
        None if vol.dims[2] == 1 => SliceRef { axis: 2, index: 0 },
        None => {
            return Err(DataError::image(
                path,
                format!(
                    "a volume of {:?} voxels: a slice must be chosen (the manifest's `slice` column)",
                    vol.dims
                ),
            ));
        }
    };
    Ok((vol, s))
}

/// A slice of a NIfTI volume as a picture in [0, 1]: laid out for display ([`nifti::Volume::slice`]),
/// rescaled (`scl_slope`/`scl_inter`) and mapped through `opts`' window. [`read_image`] takes NIfTI
/// slices through it, and so does [`crate::volume::ScanVolume`]: training, evaluation and inference
/// see the same pixels.
pub fn nifti_plane(
    vol: &nifti::Volume,
    path: &Path,
    slice: SliceRef,
    opts: &DecodeOptions,
) -> Result<Plane> {
    let s = vol.slice(path, slice.axis as usize, slice.index)?;
    let mut data = s.scaled();
    window_or_min_max(&mut data, opts.window);
    Ok(Plane {
        channels: 1,
        width: s.width,
        height: s.height,
        data,
    })
}

fn min_max_map(v: &mut [f32]) {
    let (lo, hi) = v
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let range = hi - lo;
    for x in v.iter_mut() {
        *x = if range > 0.0 { (*x - lo) / range } else { 0.0 };
    }
}

fn window_or_min_max(v: &mut [f32], window: Option<Window>) {
    match window {
        Some(w) => v.iter_mut().for_each(|x| *x = w.apply(*x)),
        None => min_max_map(v),
    }
}

/// Decodes an image file (PNG, JPEG, DICOM, NIfTI) into a [`Plane`] in [0, 1]. `slice` picks the NIfTI
/// slice or the DICOM frame.
pub fn read_image(path: &Path, slice: Option<SliceRef>, opts: &DecodeOptions) -> Result<Plane> {
    match open_source(path)? {
        Source::Nifti => {
            let (vol, s) = nifti_slice(path, slice)?;
            nifti_plane(&vol, path, s, opts)
        }
        Source::Dicom(bytes) => decode_dicom(path, &bytes, slice, opts),
        Source::Picture(bytes) => Ok(picture_to_plane(decode_picture(path, &bytes)?)),
    }
}

/// Decodes an image held in memory (an upload): PNG, JPEG or DICOM (recognised by its content),
/// refusing pictures of more than `max_pixels` pixels before their pixels are decoded (a small file
/// can declare a huge picture). `name` is what error messages call it.
pub fn decode_image_bytes(
    name: &Path,
    bytes: &[u8],
    opts: &DecodeOptions,
    max_pixels: u64,
) -> Result<Plane> {
    let too_big = |w: u64, h: u64| {
        DataError::image(
            name,
            format!("{w}x{h} pixels is more than the limit of {max_pixels}"),
        )
    };
    if dicom::has_dicom_magic(bytes) {
        // The header only: compressed pixels are decoded once, after the size check.
        let d = dicom::parse_dicom_header(name, bytes)?;
        let frames = d.frames.max(1) as u64;
        if (d.rows as u64) * (d.cols as u64) * frames > max_pixels {
            return Err(match frames {
                1 => too_big(d.cols as u64, d.rows as u64),
                f => DataError::image(
                    name,
                    format!(
                        "{f} frames of {}x{} pixels are more than the limit of {max_pixels}",
                        d.cols, d.rows
                    ),
                ),
            });
        }
        return decode_dicom(name, bytes, None, opts);
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::image(name, e.to_string()))?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| DataError::image(name, format!("not a PNG, JPEG or DICOM image ({e})")))?;
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(too_big(u64::from(w), u64::from(h)));
    }
    Ok(picture_to_plane(decode_picture(name, bytes)?))
}

/// A DICOM image's frame (`slice`'s index, else the first) in [0, 1]: rescaled, CT through `opts`'
/// window, other modalities through the file's own window, MONOCHROME1 inverted.
fn decode_dicom(
    path: &Path,
    bytes: &[u8],
    slice: Option<SliceRef>,
    opts: &DecodeOptions,
) -> Result<Plane> {
    let d = dicom::parse_dicom(path, bytes)?;
    let frame = d.frame(path, slice.map(|s| s.index).unwrap_or(0))?;
    let mut data: Vec<f32> = frame.iter().map(|&v| d.rescale(v)).collect();
    if d.samples_per_pixel == 3 {
        let max = data.iter().copied().fold(0.0f32, f32::max);
        let scale = if max <= 255.0 { 255.0 } else { max };
        data.iter_mut()
            .for_each(|x| *x = (*x / scale).clamp(0.0, 1.0));
    } else if d.modality.eq_ignore_ascii_case("CT") {
        window_or_min_max(&mut data, opts.window);
    } else {
        let w = d.window.map(|(c, w)| Window {
            center: c as f32,
            width: w as f32,
        });
        window_or_min_max(&mut data, w);
    }
    if d.photometric.eq_ignore_ascii_case("MONOCHROME1") {
        data.iter_mut().for_each(|x| *x = 1.0 - *x);
    }
    Ok(Plane {
        channels: d.samples_per_pixel,
        width: d.cols,
        height: d.rows,
        data,
    })
}

fn picture_to_plane(img: DynamicImage) -> Plane {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let gray = |data: Vec<f32>| Plane {
        channels: 1,
        width: w,
        height: h,
        data,
    };
    match img {
        DynamicImage::ImageLuma8(b) => gray(b.as_raw().iter().map(|&v| v as f32 / 255.0).collect()),
        DynamicImage::ImageLumaA8(_) => gray(
            img.to_luma8()
                .as_raw()
                .iter()
                .map(|&v| v as f32 / 255.0)
                .collect(),
        ),
        DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_) => {
            let b = img.to_luma16();
            let max = b.as_raw().iter().copied().max().unwrap_or(0);
            let scale = if max <= 4095 { 4095.0 } else { 65535.0 };
            gray(b.as_raw().iter().map(|&v| v as f32 / scale).collect())
        }
        other => {
            let rgb = other.to_rgb32f();
            let raw = rgb.as_raw();
            let n = w * h;
            let all_gray = raw.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]);
            if all_gray {
                return gray(raw.chunks_exact(3).map(|p| p[0]).collect());
            }
            let mut data = vec![0f32; 3 * n];
            for (i, p) in raw.chunks_exact(3).enumerate() {
                data[i] = p[0];
                data[n + i] = p[1];
                data[2 * n + i] = p[2];
            }
            Plane {
                channels: 3,
                width: w,
                height: h,
                data,
            }
        }
    }
}

/// Decodes a mask file (PNG, JPEG, DICOM, NIfTI) into raw values; see [`RawMask::binarize`].
pub fn read_mask(path: &Path, slice: Option<SliceRef>) -> Result<RawMask> {
    match open_source(path)? {
        Source::Nifti => {
            let (vol, at) = nifti_slice(path, slice)?;
            let s = vol.slice(path, at.axis as usize, at.index)?;
            Ok(RawMask {
                width: s.width,
                height: s.height,
                values: s.raw,
                kind: MaskKind::Label,
            })
        }
        Source::Dicom(bytes) => {
            let d = dicom::parse_dicom(path, &bytes)?;
            let frame = d.frame(path, slice.map(|s| s.index).unwrap_or(0))?;
            let n = d.rows * d.cols;
            // Colour DICOM masks: the largest sample.
            let values = (0..n)
                .map(|p| {
                    (0..d.samples_per_pixel)
                        .map(|s| frame[s * n + p])
                        .fold(f32::NEG_INFINITY, f32::max)
                })
                .collect();
            Ok(RawMask {
                width: d.cols,
                height: d.rows,
                values,
                kind: MaskKind::Label,
            })
        }
        Source::Picture(bytes) => {
            let img = decode_picture(path, &bytes)?;
            let (w, h) = (img.width() as usize, img.height() as usize);
            let sixteen = matches!(
                img,
                DynamicImage::ImageLuma16(_)
                    | DynamicImage::ImageLumaA16(_)
                    | DynamicImage::ImageRgb16(_)
                    | DynamicImage::ImageRgba16(_)
            );
            let values: Vec<f32> = match (&img, sixteen) {
                (DynamicImage::ImageLuma8(b), _) => b.as_raw().iter().map(|&v| v as f32).collect(),
                (DynamicImage::ImageLumaA8(_), _) => {
                    img.to_luma8().as_raw().iter().map(|&v| v as f32).collect()
                }
                (DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_), _) => {
                    img.to_luma16().as_raw().iter().map(|&v| v as f32).collect()
                }
                (_, true) => img
                    .to_rgb16()
                    .as_raw()
                    .chunks_exact(3)
                    .map(|p| p[0].max(p[1]).max(p[2]) as f32)
                    .collect(),
                (_, false) => img
                    .to_rgb8()
                    .as_raw()
                    .chunks_exact(3)
                    .map(|p| p[0].max(p[1]).max(p[2]) as f32)
                    .collect(),
            };
            Ok(RawMask {
                width: w,
                height: h,
                values,
                kind: MaskKind::Picture {
                    max_value: if sixteen { 65535.0 } else { 255.0 },
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        assert_eq!(Window::LUNG.apply(-600.0), 0.5);
        assert_eq!(Window::LUNG.apply(-2000.0), 0.0);
        assert_eq!(Window::LUNG.apply(1000.0), 1.0);
        assert_eq!(parse_window("none").unwrap(), None);
        assert_eq!(parse_window("Lung").unwrap(), Some(Window::LUNG));
        assert_eq!(
            parse_window("400, 40").unwrap(),
            Some(Window {
                center: 40.0,
                width: 400.0
            })
        );
        assert!(parse_window("wide").is_err());
        assert!(parse_window("0,40").is_err());
    }

    #[test]
    fn mask_rules() {
        let m = |values: Vec<f32>| RawMask {
            width: values.len(),
            height: 1,
            values,
            kind: MaskKind::Picture { max_value: 255.0 },
        };
        assert_eq!(m(vec![0.0, 1.0, 1.0]).binarize(None), vec![0, 1, 1]);
        assert_eq!(
            m(vec![0.0, 127.0, 128.0, 255.0]).binarize(None),
            vec![0, 0, 1, 1]
        );
        assert!(m(vec![0.0, 255.0]).is_binary(None));
        assert!(m(vec![0.0, 1.0]).is_binary(None));
        assert!(!m(vec![0.0, 3.0, 255.0]).is_binary(None));
        let l = RawMask {
            width: 3,
            height: 1,
            values: vec![0.0, 1.0, 2.0],
            kind: MaskKind::Label,
        };
        assert_eq!(l.binarize(None), vec![0, 1, 1]);
        assert_eq!(l.binarize(Some(2)), vec![0, 0, 1]);
        assert!(!l.is_binary(None));
        assert!(l.is_binary(Some(2)));
    }
}
