//! A small NIfTI-1 reader: single-file volumes (`.nii`, `.nii.gz`, detected by the gzip magic, not the
//! name), either byte order, datatypes u8, i8, i16, u16, i32, u32, f32, f64, with `scl_slope`/`scl_inter`.
//! Only the first 3-D volume of a 4-D file is read. The header's geometry (pixdim, qform, sform) is kept
//! ([`Geometry`]): slices are laid out for display from it, as a radiologist sees them ([`SliceLayout`]:
//! an axial slice has the patient's right on the picture's left and anterior at the top; a volume
//! without orientation, both codes 0, is shown in storage order), and [`write_volume_with`] writes it
//! back, so that a mask volume lies over its scan. Image and mask volumes go through the same layout,
//! so they stay aligned. NIfTI-2 and the two-file `.hdr`/`.img` form are reported as unsupported.
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
    /// NIfTI `datatype` code of the voxels (2 u8, 4 i16, 16 f32, …).
    pub datatype: i16,
    /// `scl_slope` (0 or non-finite: no scaling).
    pub scl_slope: f32,
    /// `scl_inter`.
    pub scl_inter: f32,
    /// Voxel size, qform and sform of the header.
    pub geometry: Geometry,
    data: Vec<u8>,
}

/// One 2-D slice of a volume.
#[derive(Debug, Clone)]
pub struct Slice {
    /// Width in voxels.
    pub width: usize,
    /// Height in voxels.
    pub height: usize,
    /// Raw stored values (no scaling), row-major `[height, width]`.
    pub raw: Vec<f32>,
    /// The volume's `scl_slope`.
    pub scl_slope: f32,
    /// The volume's `scl_inter`.
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

/// The spatial part of a NIfTI-1 header: what a mask volume must share with its scan so that viewers
/// (3D Slicer, ITK-SNAP) and tools (nnU-Net, nibabel) put it over the scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    /// `pixdim[0..8]`: `pixdim[0]` is qfac (±1, the handedness of the qform), `pixdim[1..4]` the voxel
    /// size.
    pub pixdim: [f32; 8],
    /// Units of space and time (`xyzt_units`; 2 = millimetres).
    pub xyzt_units: u8,
    /// `qform_code` (0: no qform; 1 scanner, 2 aligned, …).
    pub qform_code: i16,
    /// `sform_code` (0: no sform).
    pub sform_code: i16,
    /// `quatern_b`, `quatern_c`, `quatern_d`.
    pub quatern: [f32; 3],
    /// `qoffset_x`, `qoffset_y`, `qoffset_z`.
    pub qoffset: [f32; 3],
    /// `srow_x`, `srow_y`, `srow_z`: the sform's rows.
    pub srow: [[f32; 4]; 3],
}

impl Default for Geometry {
    /// No orientation (both codes 0), unit voxels.
    fn default() -> Self {
        Geometry {
            pixdim: [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            xyzt_units: 0,
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [[0.0; 4]; 3],
        }
    }
}

/// A voxel-to-world (RAS+, millimetres) affine: 3 rows of `[m0, m1, m2, offset]`.
pub type Affine = [[f64; 4]; 3];

impl Geometry {
    /// The qform's affine (NIfTI-1 method 2: quaternion, pixdim, qfac, offset).
    pub fn qform_affine(&self) -> Affine {
        let [b, c, d] = self.quatern.map(|v| v as f64);
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let qfac = if self.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let s = [
            self.pixdim[1] as f64,
            self.pixdim[2] as f64,
            qfac * self.pixdim[3] as f64,
        ];
        let mut m = [[0.0; 4]; 3];
        for (i, row) in m.iter_mut().enumerate() {
            for j in 0..3 {
                row[j] = r[i][j] * s[j];
            }
            row[3] = self.qoffset[i] as f64;
        }
        m
    }

    /// The sform's affine (method 3).
    pub fn sform_affine(&self) -> Affine {
        self.srow.map(|r| r.map(|v| v as f64))
    }

    /// The affine viewers use: the sform when its code is set, else the qform, else `None` (no
    /// orientation: the voxels are shown in storage order).
    pub fn affine(&self) -> Option<Affine> {
        if self.sform_code > 0 {
            Some(self.sform_affine())
        } else if self.qform_code > 0 {
            Some(self.qform_affine())
        } else {
            None
        }
    }

    /// A geometry with both the sform and the qform set from `affine` (code `code`, e.g. 1 =
    /// scanner), voxel sizes the columns' lengths, millimetres. The qform holds the nearest rotation
    /// (exact for an orthogonal affine, as NIfTI's `nifti_mat44_to_quatern` does).
    pub fn from_affine(affine: &Affine, code: i16) -> Geometry {
        let col = |j: usize| [affine[0][j], affine[1][j], affine[2][j]];
        let norm = |v: [f64; 3]| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        let sizes = [norm(col(0)), norm(col(1)), norm(col(2))];
        let mut r = [[0.0f64; 3]; 3];
        for j in 0..3 {
            let s = if sizes[j] > 0.0 { sizes[j] } else { 1.0 };
            for (i, row) in r.iter_mut().enumerate() {
                row[j] = affine[i][j] / s;
            }
        }
        let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
            - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
            + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
        let qfac = if det < 0.0 { -1.0 } else { 1.0 };
        for row in r.iter_mut() {
            row[2] *= qfac;
        }
        let quatern = quaternion_of(&r).map(|v| v as f32);
        Geometry {
            pixdim: [
                qfac as f32,
                sizes[0] as f32,
                sizes[1] as f32,
                sizes[2] as f32,
                0.0,
                0.0,
                0.0,
                0.0,
            ],
            xyzt_units: 2,
            qform_code: code,
            sform_code: code,
            quatern,
            qoffset: [
                affine[0][3] as f32,
                affine[1][3] as f32,
                affine[2][3] as f32,
            ],
            srow: affine.map(|r| r.map(|v| v as f32)),
        }
    }

    /// How a slice along `axis` is laid out for display; see [`SliceLayout`].
    pub fn slice_layout(&self, dims: [usize; 3], axis: usize) -> SliceLayout {
        let axis = axis.min(2);
        let (p, q) = match axis {
            2 => (0, 1),
            1 => (0, 2),
            _ => (1, 2),
        };
        let (np, nq) = (dims[p], dims[q]);
        let Some(m) = self.affine() else {
            return SliceLayout::storage(np, nq);
        };
        let dir = |j: usize| [m[0][j], m[1][j], m[2][j]];
        let (dp, dq, dn) = (dir(p), dir(q), dir(axis));
        // The plane is named by the world axis the slice normal is closest to; radiological display:
        // axial (normal ≈ z): columns run to the patient's left (−x), rows to posterior (−y); coronal
        // (≈ y): left (−x), inferior (−z); sagittal (≈ x): posterior (−y), inferior (−z).
        let (h, v) = match dominant(dn) {
            2 => (0, 1),
            1 => (0, 2),
            _ => (1, 2),
        };
        // Which in-plane voxel axis runs along the horizontal world axis: p, or q (then transposed).
        let transposed = dq[h].abs() > dp[h].abs();
        let (dh, dv) = if transposed { (dq, dp) } else { (dp, dq) };
        SliceLayout {
            np,
            nq,
            transposed,
            flip_h: dh[h] > 0.0,
            flip_v: dv[v] > 0.0,
        }
    }
}

fn dominant(v: [f64; 3]) -> usize {
    let a = v.map(f64::abs);
    if a[2] >= a[0] && a[2] >= a[1] {
        2
    } else if a[1] >= a[0] {
        1
    } else {
        0
    }
}

/// The quaternion (b, c, d) of a proper rotation matrix (a ≥ 0), as `nifti_mat44_to_quatern`.
fn quaternion_of(r: &[[f64; 3]; 3]) -> [f64; 3] {
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    // [a, b, c, d], from the largest of the four so that the division is well conditioned.
    let q: [f64; 4] = if trace > 0.5 {
        let a = 0.5 * trace.sqrt();
        [
            a,
            0.25 * (r[2][1] - r[1][2]) / a,
            0.25 * (r[0][2] - r[2][0]) / a,
            0.25 * (r[1][0] - r[0][1]) / a,
        ]
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            let b = 0.5 * xd.sqrt();
            [
                0.25 * (r[2][1] - r[1][2]) / b,
                b,
                0.25 * (r[0][1] + r[1][0]) / b,
                0.25 * (r[0][2] + r[2][0]) / b,
            ]
        } else if yd > 1.0 {
            let c = 0.5 * yd.sqrt();
            [
                0.25 * (r[0][2] - r[2][0]) / c,
                0.25 * (r[0][1] + r[1][0]) / c,
                c,
                0.25 * (r[1][2] + r[2][1]) / c,
            ]
        } else {
            let d = 0.5 * zd.sqrt();
            [
                0.25 * (r[1][0] - r[0][1]) / d,
                0.25 * (r[0][2] + r[2][0]) / d,
                0.25 * (r[1][2] + r[2][1]) / d,
                d,
            ]
        }
    };
    if q[0] < 0.0 {
        [-q[1], -q[2], -q[3]]
    } else {
        [q[1], q[2], q[3]]
    }
}

/// Where the pixels of a displayed 2-D slice come from in the volume: the slice's own two voxel axes
/// (p, q: (i, j) for axis 2, (i, k) for axis 1, (j, k) for axis 0), possibly exchanged and reversed
/// so that the slice looks as a radiologist sees it (axial: the patient's right on the left of the
/// picture, anterior at the top). Training, evaluation and inference all take slices through
/// [`Volume::slice`], and a predicted mask goes back into the volume through the same layout
/// ([`SliceLayout::voxel`]), so pictures, masks and written mask volumes stay aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceLayout {
    np: usize,
    nq: usize,
    /// Picture columns run along q (and rows along p).
    pub transposed: bool,
    /// Picture columns run against the voxel axis they follow.
    pub flip_h: bool,
    /// Picture rows run against the voxel axis they follow.
    pub flip_v: bool,
}

impl SliceLayout {
    /// Storage order: columns along p, rows along q (volumes without orientation).
    pub fn storage(np: usize, nq: usize) -> SliceLayout {
        SliceLayout {
            np,
            nq,
            transposed: false,
            flip_h: false,
            flip_v: false,
        }
    }

    /// (width, height) of the displayed slice.
    pub fn size(&self) -> (usize, usize) {
        if self.transposed {
            (self.nq, self.np)
        } else {
            (self.np, self.nq)
        }
    }

    /// The in-plane voxel indices (p, q) of the picture's pixel (x, y).
    pub fn voxel(&self, x: usize, y: usize) -> (usize, usize) {
        let (w, h) = self.size();
        let x = if self.flip_h { w - 1 - x } else { x };
        let y = if self.flip_v { h - 1 - y } else { y };
        if self.transposed { (y, x) } else { (x, y) }
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
    let f32s = |o: usize| -> [f32; 4] { std::array::from_fn(|k| f32_at(o + 4 * k)) };
    let geometry = Geometry {
        pixdim: std::array::from_fn(|k| f32_at(76 + 4 * k)),
        xyzt_units: b[123],
        qform_code: i16_at(252),
        sform_code: i16_at(254),
        quatern: [f32_at(256), f32_at(260), f32_at(264)],
        qoffset: [f32_at(268), f32_at(272), f32_at(276)],
        srow: [f32s(280), f32s(296), f32s(312)],
    };
    Ok(Volume {
        dims,
        datatype,
        scl_slope: f32_at(112),
        scl_inter: f32_at(116),
        geometry,
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

    /// Every voxel's stored value (no scaling) in storage order (i fastest).
    pub fn voxels(&self) -> Vec<f32> {
        let n = self.dims[0] * self.dims[1] * self.dims[2];
        (0..n).map(|i| self.voxel(i)).collect()
    }

    /// How slices along `axis` are laid out for display (see [`SliceLayout`]).
    pub fn slice_layout(&self, axis: usize) -> SliceLayout {
        self.geometry.slice_layout(self.dims, axis)
    }

    /// Slice `index` along `axis` (2: k, usually axial), laid out for display by
    /// [`Volume::slice_layout`]: pixel (x, y) is voxel `layout.voxel(x, y)` of the slice's two axes.
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
        let layout = self.slice_layout(axis);
        let (width, height) = layout.size();
        let at = |i: usize, j: usize, k: usize| i + nx * (j + ny * k);
        let mut raw = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                let (p, q) = layout.voxel(x, y);
                let idx = match axis {
                    2 => at(p, q, index),
                    1 => at(p, index, q),
                    _ => at(index, p, q),
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
/// `.gz`) of i16 (datatype 4) or u8 (datatype 2) voxels in storage order (i fastest), without
/// orientation (unit voxels, qform and sform codes 0). Used by tests and examples to make fixtures.
pub fn write_volume(
    path: &Path,
    dims: [usize; 3],
    voxels: &[i16],
    datatype: i16,
    scl_slope: f32,
    scl_inter: f32,
) -> Result<()> {
    let header = Header {
        dims,
        datatype,
        scl_slope,
        scl_inter,
        intent_code: 0,
        geometry: &Geometry::default(),
    };
    write_volume_with(path, &header, voxels)
}

/// What [`write_volume_with`] writes into the header.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    /// (nx, ny, nz).
    pub dims: [usize; 3],
    /// 2 (u8) or 4 (i16).
    pub datatype: i16,
    /// `scl_slope` (0: no scaling).
    pub scl_slope: f32,
    /// `scl_inter`.
    pub scl_inter: f32,
    /// E.g. 1002 (`NIFTI_INTENT_LABEL`) for a label map; 0 for none.
    pub intent_code: i16,
    /// Voxel size, qform and sform, e.g. a scan's [`Volume::geometry`] for its mask.
    pub geometry: &'a Geometry,
}

/// Writes a NIfTI-1 single-file volume like [`write_volume`], with the header's geometry (pixdim,
/// `xyzt_units`, qform and sform codes, quaternion, offsets and sform rows) written as given.
pub fn write_volume_with(path: &Path, header: &Header, voxels: &[i16]) -> Result<()> {
    use std::io::Write;
    let invalid = |m: &str| DataError::invalid("NIfTI volume", format!("{}: {m}", path.display()));
    let Header { dims, datatype, .. } = *header;
    if voxels.len() != dims[0] * dims[1] * dims[2] {
        return Err(invalid("voxel count does not match dims"));
    }
    if dims.iter().any(|&d| d == 0 || d > i16::MAX as usize) {
        return Err(invalid("dims out of range"));
    }
    let bitpix: i16 = match datatype {
        4 => 16,
        2 => 8,
        _ => return Err(invalid("only datatypes 2 (u8) and 4 (i16) are written")),
    };
    let mut h = header_bytes(header, bitpix);
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

/// The 348-byte header and 4 bytes of (empty) extension flag, little endian.
fn header_bytes(header: &Header, bitpix: i16) -> Vec<u8> {
    let g = header.geometry;
    let mut h = vec![0u8; 352];
    let mut put = |o: usize, b: &[u8]| h[o..o + b.len()].copy_from_slice(b);
    put(0, &348i32.to_le_bytes());
    let d = header.dims.map(|v| v as i16);
    for (k, v) in [3, d[0], d[1], d[2], 1, 1, 1, 1].iter().enumerate() {
        put(40 + 2 * k, &v.to_le_bytes());
    }
    put(68, &header.intent_code.to_le_bytes());
    put(70, &header.datatype.to_le_bytes());
    put(72, &bitpix.to_le_bytes());
    for (k, v) in g.pixdim.iter().enumerate() {
        put(76 + 4 * k, &v.to_le_bytes());
    }
    put(108, &352.0f32.to_le_bytes());
    put(112, &header.scl_slope.to_le_bytes());
    put(116, &header.scl_inter.to_le_bytes());
    put(123, &[g.xyzt_units]);
    put(252, &g.qform_code.to_le_bytes());
    put(254, &g.sform_code.to_le_bytes());
    for (k, v) in g.quatern.iter().chain(&g.qoffset).enumerate() {
        put(256 + 4 * k, &v.to_le_bytes());
    }
    for (r, row) in g.srow.iter().enumerate() {
        for (k, v) in row.iter().enumerate() {
            put(280 + 16 * r + 4 * k, &v.to_le_bytes());
        }
    }
    put(344, b"n+1\0");
    h
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

    fn with_affine(m: Affine) -> Geometry {
        Geometry::from_affine(&m, 1)
    }

    #[test]
    fn geometry_is_written_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        // Rotated 36.87° about z (cos 0.8, sin 0.6), left-handed (qfac −1), voxels 0.75 x 0.8 x 2.5.
        let m = [
            [-0.6, 0.48, 0.0, 90.5],
            [-0.45, -0.64, 0.0, -12.25],
            [0.0, 0.0, -2.5, 40.0],
        ];
        let g = with_affine(m);
        assert_eq!(g.pixdim[0], -1.0);
        let q = g.qform_affine();
        for r in 0..3 {
            for c in 0..4 {
                assert!(
                    (q[r][c] - m[r][c]).abs() < 1e-5,
                    "{r} {c}: {} vs {}",
                    q[r][c],
                    m[r][c]
                );
            }
        }
        let p = dir.path().join("g.nii.gz");
        let header = Header {
            dims: [4, 3, 2],
            datatype: 2,
            scl_slope: 1.0,
            scl_inter: 0.0,
            intent_code: 1002,
            geometry: &g,
        };
        write_volume_with(&p, &header, &[1; 24]).unwrap();
        let v = read_volume(&p).unwrap();
        assert_eq!(v.geometry, g);
        assert_eq!(v.geometry.affine(), Some(g.sform_affine()));
    }

    #[test]
    fn slices_are_laid_out_as_a_radiologist_sees_them() {
        let dims = [4, 3, 2];
        // dcm2niix's usual affine: i runs to the patient's left (−x), j anterior (+y): rows are
        // flipped so that anterior is at the top.
        let l = with_affine([
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ])
        .slice_layout(dims, 2);
        assert_eq!(l.size(), (4, 3));
        assert_eq!(l.voxel(0, 0), (0, 2));
        // RAS-canonical (nibabel's as_closest_canonical): both flipped.
        let l = with_affine([
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ])
        .slice_layout(dims, 2);
        assert_eq!(l.voxel(0, 0), (3, 2));
        // A DICOM-ordered volume (LPS → RAS: i to −x, j to −y): storage order.
        let l = with_affine([
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ])
        .slice_layout(dims, 2);
        assert_eq!(l, SliceLayout::storage(4, 3));
        // i along y (posterior), j along x (left): transposed.
        let l = with_affine([
            [0.0, -1.0, 0.0, 0.0],
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ])
        .slice_layout(dims, 2);
        assert_eq!(l.size(), (3, 4));
        assert_eq!(l.voxel(2, 1), (1, 2));
        // Without orientation: storage order, as before.
        assert_eq!(
            Geometry::default().slice_layout(dims, 2),
            SliceLayout::storage(4, 3)
        );
    }

    #[test]
    fn oriented_slices_come_back_flipped() {
        let dir = tempfile::tempdir().unwrap();
        let dims = [4, 3, 2];
        let vox: Vec<i16> = (0..24).collect();
        let g = with_affine([
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ]);
        let p = dir.path().join("o.nii");
        let header = Header {
            dims,
            datatype: 4,
            scl_slope: 1.0,
            scl_inter: 0.0,
            intent_code: 0,
            geometry: &g,
        };
        write_volume_with(&p, &header, &vox).unwrap();
        let s = read_volume(&p).unwrap().slice(&p, 2, 1).unwrap();
        // Picture row 0 is j = 2: voxels 12 + 4·2 + i.
        assert_eq!(&s.raw[..4], &[20.0, 21.0, 22.0, 23.0]);
        assert_eq!(&s.raw[8..], &[12.0, 13.0, 14.0, 15.0]);
    }
}
