//! A small NIfTI-1 reader: single-file volumes (`.nii`, `.nii.gz`, detected by the gzip magic, not the
//! name), either byte order, datatypes u8, i8, i16, u16, i32, u32, f32, f64, with `scl_slope`/`scl_inter`.
//! Only the first 3-D volume of a 4-D file is read. No reorientation is applied: a slice is taken in
//! storage order (see [`Volume::slice`]), and the image and mask volumes are indexed the same way, so
//! they stay aligned. NIfTI-2 and the two-file `.hdr`/`.img` form are reported as unsupported.
//!
//! Decoded volumes are kept in a process-wide cache with a byte budget (default 1 GiB,
//! [`set_cache_budget`]), so that the slices of one volume do not decompress it again each time.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use crate::error::{DataError, Result};

/// A NIfTI-1 volume: the first 3-D volume, raw voxel bytes in little-endian order.
#[derive(Debug)]
pub struct Volume {
    /// (nx, ny, nz); nz is 1 for a 2-D image.
    pub dims: [usize; 3],
    pub datatype: i16,
    pub scl_slope: f32,
    pub scl_inter: f32,
    data: Vec<u8>,
}

/// One 2-D slice of a volume.
#[derive(Debug, Clone)]
pub struct Slice {
    pub width: usize,
    pub height: usize,
    /// Raw stored values (no scaling), row-major `[height, width]`.
    pub raw: Vec<f32>,
    pub scl_slope: f32,
    pub scl_inter: f32,
}

impl Slice {
    /// Values after `scl_slope`/`scl_inter` (which NIfTI ignores when the slope is 0 or not finite).
    pub fn scaled(&self) -> Vec<f32> {
        if self.scl_slope == 0.0 || !self.scl_slope.is_finite() || !self.scl_inter.is_finite() {
            return self.raw.clone();
        }
        self.raw
            .iter()
            .map(|&v| v * self.scl_slope + self.scl_inter)
            .collect()
    }
}

fn bytes_per_voxel(datatype: i16) -> Option<usize> {
    Some(match datatype {
        2 | 256 => 1,      // u8, i8
        4 | 512 => 2,      // i16, u16
        8 | 768 | 16 => 4, // i32, u32, f32
        64 => 8,           // f64
        _ => return None,
    })
}

fn datatype_name(datatype: i16) -> String {
    match datatype {
        1 => "binary".into(),
        32 => "complex64".into(),
        128 => "rgb24".into(),
        1024 => "i64".into(),
        1280 => "u64".into(),
        1536 => "f128".into(),
        1792 => "complex128".into(),
        2304 => "rgba32".into(),
        d => format!("code {d}"),
    }
}

/// True when the path names a NIfTI file (`.nii` or `.nii.gz`, any case).
pub fn is_nifti_path(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// Reads and decodes a NIfTI-1 file.
pub fn read_volume(path: &Path) -> Result<Volume> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                DataError::image(path, format!("gzip stream is corrupt or truncated: {e}"))
            })?;
        out
    } else {
        raw
    };
    parse_volume(path, &bytes)
}

fn parse_volume(path: &Path, b: &[u8]) -> Result<Volume> {
    let err = |m: String| DataError::image(path, m);
    if b.len() < 348 {
        return Err(err(format!(
            "not a NIfTI-1 file: {} bytes, the header alone is 348",
            b.len()
        )));
    }
    let le = match (
        i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        i32::from_be_bytes([b[0], b[1], b[2], b[3]]),
    ) {
        (348, _) => true,
        (_, 348) => false,
        (540, _) | (_, 540) => return Err(err("NIfTI-2 is not supported (NIfTI-1 only)".into())),
        (n, _) => {
            return Err(err(format!(
                "not a NIfTI-1 file (sizeof_hdr = {n}, expected 348)"
            )));
        }
    };
    let i16_at = |o: usize| {
        let a = [b[o], b[o + 1]];
        if le {
            i16::from_le_bytes(a)
        } else {
            i16::from_be_bytes(a)
        }
    };
    let f32_at = |o: usize| {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            f32::from_le_bytes(a)
        } else {
            f32::from_be_bytes(a)
        }
    };
    let magic = &b[344..348];
    if magic == b"ni1\0" {
        return Err(err(
            "two-file NIfTI (.hdr/.img) is not supported; convert it to a single .nii(.gz)".into(),
        ));
    }
    if magic != b"n+1\0" {
        return Err(err(format!(
            "bad NIfTI-1 magic {magic:?} (expected \"n+1\\0\")"
        )));
    }
    let ndim = i16_at(40);
    if !(1..=7).contains(&ndim) {
        return Err(err(format!("dim[0] = {ndim} is out of range 1..7")));
    }
    let mut dims = [1usize; 3];
    for (k, d) in dims.iter_mut().enumerate().take((ndim as usize).min(3)) {
        let v = i16_at(42 + 2 * k);
        if v < 1 {
            return Err(err(format!("dim[{}] = {v} is not positive", k + 1)));
        }
        *d = v as usize;
    }
    let datatype = i16_at(70);
    let bpv = bytes_per_voxel(datatype).ok_or_else(|| {
        err(format!(
            "unsupported datatype {} (supported: u8, i8, i16, u16, i32, u32, f32, f64)",
            datatype_name(datatype)
        ))
    })?;
    let vox_offset = f32_at(108);
    if !(vox_offset.is_finite() && vox_offset >= 348.0) {
        return Err(err(format!("vox_offset {vox_offset} is invalid")));
    }
    let start = vox_offset as usize;
    let n = dims[0] * dims[1] * dims[2];
    let len = n * bpv;
    let end = start + len;
    if b.len() < end {
        return Err(err(format!(
            "truncated: {n} voxels of {bpv} bytes need {end} bytes, the file has {}",
            b.len()
        )));
    }
    let mut data = b[start..end].to_vec();
    if !le && bpv > 1 {
        for chunk in data.chunks_exact_mut(bpv) {
            chunk.reverse();
        }
    }
    Ok(Volume {
        dims,
        datatype,
        scl_slope: f32_at(112),
        scl_inter: f32_at(116),
        data,
    })
}

impl Volume {
    /// The number of slices along `axis` (0, 1 or 2).
    pub fn n_slices(&self, axis: usize) -> usize {
        self.dims.get(axis).copied().unwrap_or(0)
    }

    fn voxel(&self, idx: usize) -> f32 {
        let d = &self.data;
        match self.datatype {
            2 => d[idx] as f32,
            256 => d[idx] as i8 as f32,
            4 => i16::from_le_bytes([d[2 * idx], d[2 * idx + 1]]) as f32,
            512 => u16::from_le_bytes([d[2 * idx], d[2 * idx + 1]]) as f32,
            8 => i32::from_le_bytes([d[4 * idx], d[4 * idx + 1], d[4 * idx + 2], d[4 * idx + 3]])
                as f32,
            768 => u32::from_le_bytes([d[4 * idx], d[4 * idx + 1], d[4 * idx + 2], d[4 * idx + 3]])
                as f32,
            16 => f32::from_le_bytes([d[4 * idx], d[4 * idx + 1], d[4 * idx + 2], d[4 * idx + 3]]),
            _ => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&d[8 * idx..8 * idx + 8]);
                f64::from_le_bytes(a) as f32
            }
        }
    }

    /// Slice `index` along `axis`, in storage order: for axis 2 (k, usually axial) the slice is
    /// `[ny, nx]` (x = i, y = j); axis 1: `[nz, nx]` (x = i, y = k); axis 0: `[nz, ny]` (x = j, y = k).
    pub fn slice(&self, path: &Path, axis: usize, index: usize) -> Result<Slice> {
        let [nx, ny, nz] = self.dims;
        if axis > 2 || index >= self.dims[axis] {
            return Err(DataError::image(
                path,
                format!(
                    "slice {index} along axis {axis} is out of range (volume is {nx}x{ny}x{nz})"
                ),
            ));
        }
        let at = |i: usize, j: usize, k: usize| i + nx * (j + ny * k);
        let (width, height) = match axis {
            2 => (nx, ny),
            1 => (nx, nz),
            _ => (ny, nz),
        };
        let mut raw = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                let idx = match axis {
                    2 => at(x, y, index),
                    1 => at(x, index, y),
                    _ => at(index, x, y),
                };
                raw.push(self.voxel(idx));
            }
        }
        Ok(Slice {
            width,
            height,
            raw,
            scl_slope: self.scl_slope,
            scl_inter: self.scl_inter,
        })
    }

    /// Indices of the slices along `axis` holding at least one nonzero voxel (or one equal to
    /// `label`).
    pub fn nonempty_slices(&self, axis: usize, label: Option<u32>) -> Vec<usize> {
        let [nx, ny, nz] = self.dims;
        let mut hit = vec![false; self.n_slices(axis)];
        for k in 0..nz {
            for j in 0..ny {
                for i in 0..nx {
                    let v = self.voxel(i + nx * (j + ny * k));
                    let fg = match label {
                        Some(l) => v == l as f32,
                        None => v != 0.0,
                    };
                    if fg {
                        hit[[i, j, k][axis.min(2)]] = true;
                    }
                }
            }
        }
        hit.iter()
            .enumerate()
            .filter(|(_, h)| **h)
            .map(|(i, _)| i)
            .collect()
    }

    fn bytes(&self) -> usize {
        self.data.len()
    }
}

struct Cache {
    budget: usize,
    used: usize,
    entries: VecDeque<(PathBuf, Arc<Volume>)>,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| {
    Mutex::new(Cache {
        budget: 1 << 30,
        used: 0,
        entries: VecDeque::new(),
    })
});

/// Sets the byte budget of the process-wide volume cache (0 disables it).
pub fn set_cache_budget(bytes: usize) {
    if let Ok(mut c) = CACHE.lock() {
        c.budget = bytes;
        evict(&mut c);
    }
}

fn evict(c: &mut Cache) {
    while c.used > c.budget {
        match c.entries.pop_front() {
            Some((_, v)) => c.used -= v.bytes(),
            None => break,
        }
    }
}

/// A volume through the process-wide cache (least recently used entries are dropped first).
pub fn cached_volume(path: &Path) -> Result<Arc<Volume>> {
    if let Ok(mut c) = CACHE.lock()
        && let Some(pos) = c.entries.iter().position(|(p, _)| p == path)
        && let Some(entry) = c.entries.remove(pos)
    {
        let v = entry.1.clone();
        c.entries.push_back(entry);
        return Ok(v);
    }
    let v = Arc::new(read_volume(path)?);
    if let Ok(mut c) = CACHE.lock()
        && v.bytes() <= c.budget
        && !c.entries.iter().any(|(p, _)| p == path)
    {
        c.used += v.bytes();
        c.entries.push_back((path.to_path_buf(), v.clone()));
        evict(&mut c);
    }
    Ok(v)
}

/// Writes a NIfTI-1 single-file volume (little endian, `.nii`, or gzip-compressed when the name ends in
/// `.gz`) of i16 (datatype 4) or u8 (datatype 2) voxels in storage order (i fastest). Used by tests and
/// examples to make fixtures.
pub fn write_volume(
    path: &Path,
    dims: [usize; 3],
    voxels: &[i16],
    datatype: i16,
    scl_slope: f32,
    scl_inter: f32,
) -> Result<()> {
    use std::io::Write;
    let invalid = |m: &str| DataError::invalid("NIfTI volume", format!("{}: {m}", path.display()));
    if voxels.len() != dims[0] * dims[1] * dims[2] {
        return Err(invalid("voxel count does not match dims"));
    }
    if dims.iter().any(|&d| d == 0 || d > i16::MAX as usize) {
        return Err(invalid("dims out of range"));
    }
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    let dim: [i16; 8] = [
        3,
        dims[0] as i16,
        dims[1] as i16,
        dims[2] as i16,
        1,
        1,
        1,
        1,
    ];
    for (k, d) in dim.iter().enumerate() {
        h[40 + 2 * k..42 + 2 * k].copy_from_slice(&d.to_le_bytes());
    }
    let bitpix: i16 = match datatype {
        4 => 16,
        2 => 8,
        _ => return Err(invalid("only datatypes 2 (u8) and 4 (i16) are written")),
    };
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    for k in 0..4 {
        h[76 + 4 * k..80 + 4 * k].copy_from_slice(&1.0f32.to_le_bytes()); // pixdim
    }
    h[108..112].copy_from_slice(&352.0f32.to_le_bytes());
    h[112..116].copy_from_slice(&scl_slope.to_le_bytes());
    h[116..120].copy_from_slice(&scl_inter.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    for &v in voxels {
        if datatype == 4 {
            h.extend_from_slice(&v.to_le_bytes());
        } else {
            h.push(v.clamp(0, 255) as u8);
        }
    }
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let bytes = if gz {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&h).map_err(|e| DataError::io(path, e))?;
        enc.finish().map_err(|e| DataError::io(path, e))?
    } else {
        h
    };
    std::fs::write(path, bytes).map_err(|e| DataError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_slicing() {
        let dir = tempfile::tempdir().unwrap();
        let dims = [4, 3, 2];
        let vox: Vec<i16> = (0..24).map(|v| v as i16 - 5).collect();
        for name in ["a.nii", "a.nii.gz"] {
            let p = dir.path().join(name);
            write_volume(&p, dims, &vox, 4, 2.0, -1.0).unwrap();
            let v = read_volume(&p).unwrap();
            assert_eq!(v.dims, dims);
            let s = v.slice(&p, 2, 1).unwrap();
            assert_eq!((s.width, s.height), (4, 3));
            assert_eq!(s.raw[0], 12.0 - 5.0);
            assert_eq!(s.scaled()[0], 2.0 * 7.0 - 1.0);
            let s = v.slice(&p, 0, 1).unwrap();
            assert_eq!((s.width, s.height), (3, 2));
            // x = j, y = k: voxel (1, 2, 1) = 1 + 4 * (2 + 3 * 1) = 21.
            assert_eq!(s.raw[2 + 3], 21.0 - 5.0);
            assert!(v.slice(&p, 2, 2).is_err());
            assert_eq!(v.nonempty_slices(2, Some(0)), vec![0]);
        }
    }
}
