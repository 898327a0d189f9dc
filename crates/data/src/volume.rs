//! A CT volume for slice-by-slice segmentation: a NIfTI-1 file or a folder holding one DICOM series,
//! read as axial slices (pictures in [0, 1], as training reads them) with the geometry that a mask
//! volume needs to lie over the scan in 3D Slicer, ITK-SNAP or nnU-Net.
//!
//! - NIfTI: slice k is voxel plane k (the third axis), laid out for display by the header's
//!   orientation ([`crate::nifti::SliceLayout`]); the mask volume gets the input's dims, pixdim,
//!   qform and sform.
//! - A DICOM series: every DICOM file of the folder (by `DICM` prefix or extension), one series, sorted
//!   along the slice normal by Image Position (Patient) (by Instance Number where positions are
//!   missing), with equal rows, columns, pixel spacing and orientation and even slice spacing checked.
//!   Slice k is file k's picture as stored (the pixels a DICOM training sample gives), NIfTI voxel
//!   (i, j, k) is column i, row j of file k, and the affine comes from the orientation, the pixel
//!   spacing and the positions, converted from DICOM's LPS to NIfTI's RAS ([`dicom_affine`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dicom::{self, DicomHeader};
use crate::error::{DataError, Result};
use crate::imageio::{self, DecodeOptions, Plane, SliceRef};
use crate::nifti::{self, Affine, Geometry, SliceLayout};

/// `NIFTI_INTENT_LABEL`: the written mask is a label map.
const INTENT_LABEL: i16 = 1002;

/// A scan opened for slice-by-slice segmentation ([`ScanVolume::open`]).
#[derive(Debug, Clone)]
pub struct ScanVolume {
    /// The NIfTI file or the DICOM series folder.
    pub source: PathBuf,
    /// Voxels (nx, ny, nz) of the mask volume; nz axial slices.
    pub dims: [usize; 3],
    /// Voxel size, qform and sform the mask volume is written with.
    pub geometry: Geometry,
    /// How slice pictures map to voxels of their plane.
    pub layout: SliceLayout,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Nifti(Arc<nifti::Volume>),
    /// The series' files in slice order.
    Dicom(Vec<PathBuf>),
}

impl ScanVolume {
    /// Opens a NIfTI file (`.nii`, `.nii.gz`) or a folder holding one DICOM series.
    pub fn open(path: &Path) -> Result<ScanVolume> {
        if path.is_dir() {
            Self::open_dicom_series(path)
        } else if nifti::is_nifti_path(path) {
            Self::open_nifti(path)
        } else {
            Err(DataError::image(
                path,
                "not a volume: give a NIfTI file (.nii, .nii.gz) or a folder of DICOM slices",
            ))
        }
    }

    /// A NIfTI volume (through the process-wide volume cache).
    pub fn open_nifti(path: &Path) -> Result<ScanVolume> {
        let vol = nifti::cached_volume(path)?;
        Ok(ScanVolume {
            source: path.to_path_buf(),
            dims: vol.dims,
            geometry: vol.geometry.clone(),
            layout: vol.slice_layout(2),
            kind: Kind::Nifti(vol),
        })
    }

    /// The axial slices.
    pub fn n_slices(&self) -> usize {
        self.dims[2]
    }

    /// Where training reads slice `k` from: the file and, for NIfTI, the slice in it.
    pub fn slice_source(&self, k: usize) -> (PathBuf, Option<SliceRef>) {
        match &self.kind {
            Kind::Nifti(_) => (self.source.clone(), Some(SliceRef { axis: 2, index: k })),
            Kind::Dicom(files) => (files.get(k).cloned().unwrap_or_default(), None),
        }
    }

    /// Slice `k` as a picture in [0, 1], decoded exactly as a training sample of the same file is.
    pub fn slice(&self, k: usize, opts: &DecodeOptions) -> Result<Plane> {
        if k >= self.n_slices() {
            return Err(DataError::image(
                &self.source,
                format!("slice {k} is out of range ({} slices)", self.n_slices()),
            ));
        }
        match &self.kind {
            Kind::Nifti(vol) => {
                imageio::nifti_plane(vol, &self.source, SliceRef { axis: 2, index: k }, opts)
            }
            Kind::Dicom(files) => imageio::read_image(&files[k], None, opts),
        }
    }

    /// The volume's voxel size in mm³ (the pixdim product).
    pub fn voxel_volume_mm3(&self) -> f64 {
        let p = &self.geometry.pixdim;
        (p[1] as f64 * p[2] as f64 * p[3] as f64).abs()
    }

    /// Puts slice `k`'s mask (`width * height` flags in picture order) into `voxels` (storage order,
    /// i fastest) as 0/1.
    pub fn put_slice_mask(&self, voxels: &mut [u8], k: usize, mask: &[bool]) -> Result<()> {
        let [nx, ny, nz] = self.dims;
        let (w, h) = self.layout.size();
        if mask.len() != w * h || voxels.len() != nx * ny * nz || k >= nz {
            return Err(DataError::invalid(
                "slice mask",
                format!(
                    "{}: {} flags for slice {k} of {w}x{h} in a {nx}x{ny}x{nz} volume",
                    self.source.display(),
                    mask.len()
                ),
            ));
        }
        for y in 0..h {
            for x in 0..w {
                let (i, j) = self.layout.voxel(x, y);
                voxels[i + nx * (j + ny * k)] = mask[y * w + x] as u8;
            }
        }
        Ok(())
    }

    /// Slice `k` of a voxel array in storage order, in picture order (the inverse of
    /// [`ScanVolume::put_slice_mask`]).
    pub fn slice_of(&self, voxels: &[u8], k: usize) -> Vec<u8> {
        let [nx, ny, _] = self.dims;
        let (w, h) = self.layout.size();
        let mut out = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let (i, j) = self.layout.voxel(x, y);
                out.push(voxels.get(i + nx * (j + ny * k)).copied().unwrap_or(0));
            }
        }
        out
    }

    /// Writes a uint8 mask volume (storage order, as [`ScanVolume::put_slice_mask`] fills it) with
    /// this scan's dims and geometry, as a label map (`.nii` or `.nii.gz`).
    pub fn write_mask(&self, path: &Path, voxels: &[u8]) -> Result<()> {
        let values: Vec<i16> = voxels.iter().map(|&v| v as i16).collect();
        let header = nifti::Header {
            dims: self.dims,
            datatype: 2,
            scl_slope: 1.0,
            scl_inter: 0.0,
            intent_code: INTENT_LABEL,
            geometry: &self.geometry,
        };
        nifti::write_volume_with(path, &header, &values)
    }
}

/// The NIfTI (RAS) affine of a DICOM series: voxel (i, j, k) is column i, row j of slice k.
/// `orientation` is Image Orientation (Patient) (row cosines, then column cosines), `spacing` Pixel
/// Spacing (between rows, between columns), `first` the first slice's Image Position (Patient) and
/// `step` the position difference from one slice to the next, all in DICOM's LPS millimetres.
/// NIfTI's world is RAS: x and y change sign.
pub fn dicom_affine(
    orientation: [f64; 6],
    spacing: [f64; 2],
    first: [f64; 3],
    step: [f64; 3],
) -> Affine {
    let row = [orientation[0], orientation[1], orientation[2]];
    let col = [orientation[3], orientation[4], orientation[5]];
    let mut m = [[0.0; 4]; 3];
    for a in 0..3 {
        let lps_to_ras = if a < 2 { -1.0 } else { 1.0 };
        m[a] = [
            lps_to_ras * row[a] * spacing[1],
            lps_to_ras * col[a] * spacing[0],
            lps_to_ras * step[a],
            lps_to_ras * first[a],
        ];
    }
    m
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// The DICOM files of a folder, sorted by name: by `DICM` prefix or DICOM extension; `DICOMDIR`
/// and hidden files are left out.
fn dicom_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !path.is_file() || name.starts_with('.') || name.eq_ignore_ascii_case("DICOMDIR") {
            continue;
        }
        if dicom::is_dicom_path(&path) || has_magic(&path) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(DataError::image(dir, "no DICOM file in the folder"));
    }
    Ok(files)
}

fn has_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| dicom::has_dicom_magic(&head))
}

/// Checks that every slice has the first one's size, spacing and orientation, and comes from one series.
fn check_consistent(slices: &[(PathBuf, DicomHeader)]) -> Result<()> {
    let (_, first) = &slices[0];
    let close = |a: &[f64], b: &[f64], tol: f64| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol);
    for (path, h) in slices {
        let bad = |what: &str, this: String, other: String| {
            Err(DataError::image(
                path,
                format!(
                    "{what} is {this}, {} has {other}: not one series",
                    slices[0].0.display()
                ),
            ))
        };
        if h.series_uid() != first.series_uid() {
            return bad(
                "Series Instance UID",
                h.series_uid().into(),
                first.series_uid().into(),
            );
        }
        if (h.rows, h.cols) != (first.rows, first.cols) {
            let size = |h: &DicomHeader| format!("{}x{}", h.cols, h.rows);
            return bad("the size", size(h), size(first));
        }
        if h.frames != 1 || h.samples_per_pixel != 1 {
            return Err(DataError::image(
                path,
                format!(
                    "{} frames of {} samples: a series slice must be one grey frame",
                    h.frames, h.samples_per_pixel
                ),
            ));
        }
        let (g, g0) = (&h.geometry, &first.geometry);
        let spacing = |s: Option<[f64; 2]>| s.map(|s| s.to_vec()).unwrap_or_default();
        if !close(&spacing(g.pixel_spacing), &spacing(g0.pixel_spacing), 1e-3)
            || g.pixel_spacing.is_some() != g0.pixel_spacing.is_some()
        {
            return bad(
                "Pixel Spacing",
                format!("{:?}", g.pixel_spacing),
                format!("{:?}", g0.pixel_spacing),
            );
        }
        let orient = |o: Option<[f64; 6]>| o.map(|o| o.to_vec()).unwrap_or_default();
        if !close(&orient(g.orientation), &orient(g0.orientation), 1e-4)
            || g.orientation.is_some() != g0.orientation.is_some()
        {
            return bad(
                "Image Orientation (Patient)",
                format!("{:?}", g.orientation),
                format!("{:?}", g0.orientation),
            );
        }
    }
    Ok(())
}

impl DicomHeader {
    fn series_uid(&self) -> &str {
        &self.geometry.series_uid
    }
}

impl ScanVolume {
    /// A folder holding one DICOM series (see the module documentation).
    pub fn open_dicom_series(dir: &Path) -> Result<ScanVolume> {
        let mut slices = Vec::new();
        for path in dicom_files(dir)? {
            let h = dicom::read_dicom_header(&path)?;
            slices.push((path, h));
        }
        check_consistent(&slices)?;
        let (_, h0) = &slices[0];
        let (rows, cols) = (h0.rows, h0.cols);
        let spacing = h0.geometry.pixel_spacing.unwrap_or([1.0, 1.0]);
        let positioned = slices.iter().all(|(_, h)| h.geometry.position.is_some());
        let geometry = match (h0.geometry.orientation, positioned) {
            (Some(orientation), true) => sort_by_position(dir, &mut slices, orientation, spacing)?,
            _ => {
                // No positions: Instance Number order (else file names), voxel sizes only.
                slices.sort_by_key(|(p, h)| (h.geometry.instance_number, p.clone()));
                let g = &slices[0].1.geometry;
                let thickness = g
                    .spacing_between_slices
                    .or(g.slice_thickness)
                    .unwrap_or(1.0);
                let mut geometry = Geometry::default();
                geometry.pixdim[1..4].copy_from_slice(&[
                    spacing[1] as f32,
                    spacing[0] as f32,
                    thickness as f32,
                ]);
                geometry.xyzt_units = 2;
                geometry
            }
        };
        Ok(ScanVolume {
            source: dir.to_path_buf(),
            dims: [cols, rows, slices.len()],
            geometry,
            layout: SliceLayout::storage(cols, rows),
            kind: Kind::Dicom(slices.into_iter().map(|(p, _)| p).collect()),
        })
    }
}

/// Sorts the slices along the normal of their orientation and returns the series' geometry; slices at
/// the same position or unevenly spaced (a missing slice) are errors.
fn sort_by_position(
    dir: &Path,
    slices: &mut [(PathBuf, DicomHeader)],
    orientation: [f64; 6],
    spacing: [f64; 2],
) -> Result<Geometry> {
    let normal = cross(
        [orientation[0], orientation[1], orientation[2]],
        [orientation[3], orientation[4], orientation[5]],
    );
    let pos = |h: &DicomHeader| h.geometry.position.unwrap_or_default();
    slices.sort_by(|a, b| dot(pos(&a.1), normal).total_cmp(&dot(pos(&b.1), normal)));
    let along: Vec<f64> = slices.iter().map(|(_, h)| dot(pos(h), normal)).collect();
    let n = slices.len();
    let first = pos(&slices[0].1);
    let step: [f64; 3] = if n > 1 {
        let last = pos(&slices[n - 1].1);
        std::array::from_fn(|a| (last[a] - first[a]) / (n - 1) as f64)
    } else {
        let g = &slices[0].1.geometry;
        let t = g
            .spacing_between_slices
            .or(g.slice_thickness)
            .unwrap_or(1.0);
        normal.map(|v| v * t)
    };
    let mean = if n > 1 {
        (along[n - 1] - along[0]) / (n - 1) as f64
    } else {
        1.0
    };
    for k in 1..n {
        let gap = along[k] - along[k - 1];
        if gap.abs() < 1e-4 || (gap - mean).abs() > 0.01 * mean.abs() + 0.01 {
            return Err(DataError::image(
                dir,
                format!(
                    "slices {} and {} are {gap:.3} mm apart, the series' mean spacing is {mean:.3} mm \
                     (a duplicate or missing slice?)",
                    slices[k - 1].0.display(),
                    slices[k].0.display()
                ),
            ));
        }
    }
    let affine = dicom_affine(orientation, spacing, first, step);
    Ok(Geometry::from_affine(&affine, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lps_to_ras_affine() {
        // Plain axial: rows run to the patient's left (+x LPS), columns to posterior (+y LPS).
        let m = dicom_affine(
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            [0.5, 0.75],
            [-100.0, -120.0, 30.0],
            [0.0, 0.0, 2.5],
        );
        assert_eq!(
            m,
            [
                [-0.75, 0.0, 0.0, 100.0],
                [0.0, -0.5, 0.0, 120.0],
                [0.0, 0.0, 2.5, 30.0]
            ]
        );
        // Tilted: row (0.8, 0.6, 0), column (-0.48, 0.64, 0.6), step 2.5 along their normal.
        let o = [0.8, 0.6, 0.0, -0.48, 0.64, 0.6];
        let n = cross([0.8, 0.6, 0.0], [-0.48, 0.64, 0.6]);
        let step = n.map(|v| 2.5 * v);
        let m = dicom_affine(o, [2.0, 1.0], [10.0, 20.0, 30.0], step);
        // Voxel (i, j, k) → LPS: first + i·1.0·row + j·2.0·col + k·step; RAS negates x and y.
        let (i, j, k) = (3.0, 5.0, 2.0);
        for a in 0..3 {
            let lps = [10.0, 20.0, 30.0][a] + i * o[a] + j * 2.0 * o[3 + a] + k * step[a];
            let ras = if a < 2 { -lps } else { lps };
            let got = m[a][0] * i + m[a][1] * j + m[a][2] * k + m[a][3];
            assert!((got - ras).abs() < 1e-12, "axis {a}: {got} vs {ras}");
        }
        // The qform made from it reproduces it (the matrix is orthogonal up to scale).
        let g = Geometry::from_affine(&m, 1);
        let q = g.qform_affine();
        for (r, row) in q.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                assert!(
                    (v - m[r][c]).abs() < 1e-4,
                    "qform[{r}][{c}] {v} vs {}",
                    m[r][c]
                );
            }
        }
        assert_eq!(g.pixdim[1..4], [1.0, 2.0, 2.5]);
    }
}
