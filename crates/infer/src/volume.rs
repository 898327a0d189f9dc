//! Segmenting a CT volume (a NIfTI file or a DICOM series, [`ScanVolume`]) slice by slice with one
//! caption: the axial slices go through [`Segmenter::segment_batch`] in batches, exactly as single
//! pictures do, and the thresholded masks go back into a voxel array in the input's storage order, to be
//! written with the input's geometry ([`ScanVolume::write_mask`]).

use std::time::Instant;

use image::{Rgb, RgbImage};
use tgcnet_data::{Plane, ScanVolume};

use crate::{Result, SegmentOptions, Segmenter, gray, overlay};

/// How a volume is segmented.
#[derive(Debug, Clone)]
pub struct VolumeOptions {
    /// Slices per forward pass.
    pub batch_size: usize,
    /// Probability above which a voxel is lesion.
    pub threshold: f32,
}

impl Default for VolumeOptions {
    fn default() -> Self {
        Self {
            batch_size: 8,
            threshold: 0.5,
        }
    }
}

/// A volume's mask.
#[derive(Debug, Clone)]
pub struct VolumeSegmentation {
    /// (nx, ny, nz) of the input.
    pub dims: [usize; 3],
    /// 0/1 per voxel in the input's storage order (i fastest), for [`ScanVolume::write_mask`].
    pub voxels: Vec<u8>,
    /// Lesion pixels per axial slice.
    pub slice_foreground: Vec<usize>,
    /// The caption as the model read it.
    pub caption: String,
    /// Wall time of the whole volume, in milliseconds.
    pub total_ms: f64,
}

impl VolumeSegmentation {
    /// Lesion voxels in all.
    pub fn foreground(&self) -> usize {
        self.slice_foreground.iter().sum()
    }

    /// The slices holding lesion.
    pub fn slices_with_lesion(&self) -> Vec<usize> {
        (0..self.slice_foreground.len())
            .filter(|&k| self.slice_foreground[k] > 0)
            .collect()
    }
}

impl Segmenter {
    /// Segments every axial slice of `volume` with `caption`, `options.batch_size` slices at a time.
    pub fn segment_volume(
        &self,
        volume: &ScanVolume,
        caption: &str,
        options: &SegmentOptions,
        volume_options: &VolumeOptions,
    ) -> Result<VolumeSegmentation> {
        let t0 = Instant::now();
        let [nx, ny, nz] = volume.dims;
        let mut voxels = vec![0u8; nx * ny * nz];
        let mut slice_foreground = vec![0usize; nz];
        let mut read_caption = self.prepare_caption(caption, options);
        let batch = volume_options.batch_size.max(1);
        for start in (0..nz).step_by(batch) {
            let ks: Vec<usize> = (start..(start + batch).min(nz)).collect();
            let planes = ks
                .iter()
                .map(|&k| volume.slice(k, &options.decode))
                .collect::<std::result::Result<Vec<Plane>, _>>()?;
            let items: Vec<(&Plane, &str)> = planes.iter().map(|p| (p, caption)).collect();
            for (&k, r) in ks.iter().zip(self.segment_batch(&items, options)?) {
                let mask = r.mask(volume_options.threshold);
                slice_foreground[k] = mask.iter().filter(|&&m| m).count();
                volume.put_slice_mask(&mut voxels, k, &mask)?;
                read_caption = r.caption;
            }
        }
        Ok(VolumeSegmentation {
            dims: volume.dims,
            voxels,
            slice_foreground,
            caption: read_caption,
            total_ms: t0.elapsed().as_secs_f64() * 1e3,
        })
    }
}

/// A contact sheet of overlays (mask in red over the slice) of the slices `ks`, `columns` to a row,
/// separated by 2 black pixels; tiles at the slices' own size.
pub fn overlay_strip(
    volume: &ScanVolume,
    result: &VolumeSegmentation,
    ks: &[usize],
    columns: usize,
    options: &SegmentOptions,
) -> Result<RgbImage> {
    let (w, h) = volume.layout.size();
    let columns = columns.clamp(1, ks.len().max(1));
    let rows = ks.len().div_ceil(columns).max(1);
    let gap = 2;
    let mut strip = RgbImage::from_pixel(
        (columns * (w + gap) - gap) as u32,
        (rows * (h + gap) - gap) as u32,
        Rgb([0, 0, 0]),
    );
    for (t, &k) in ks.iter().enumerate() {
        let plane = volume.slice(k, &options.decode)?;
        let mask: Vec<bool> = volume
            .slice_of(&result.voxels, k)
            .into_iter()
            .map(|v| v > 0)
            .collect();
        let tile = overlay(&gray(&plane), &mask, None);
        let (x0, y0) = ((t % columns) * (w + gap), (t / columns) * (h + gap));
        for (x, y, px) in tile.enumerate_pixels() {
            strip.put_pixel(x0 as u32 + x, y0 as u32 + y, *px);
        }
    }
    Ok(strip)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use burn::tensor::Device;
    use tgcnet_data::nifti::{Geometry, Header, write_volume_with};
    use tgcnet_data::{DecodeOptions, ScanVolume, Window};
    use tgcnet_model::{TgcNet, TgcNetConfig};

    use super::*;

    const CAPTION: &str =
        "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.";

    /// A 20x16x5 volume with lungs and a lesion, in dcm2niix's orientation (rows flipped for display).
    fn write_scan(path: &Path) {
        let (nx, ny, nz) = (20, 16, 5);
        let mut vox = vec![-1000i16; nx * ny * nz];
        for k in 0..nz {
            for j in 2..ny - 2 {
                for i in 1..nx - 1 {
                    let lung = (i % 10) > 2 && (i % 10) < 8;
                    let lesion = (5..8).contains(&j) && (12..16).contains(&i) && k >= 2;
                    vox[i + nx * (j + ny * k)] = if lesion {
                        20
                    } else if lung {
                        -850
                    } else {
                        40
                    };
                }
            }
        }
        let g = Geometry::from_affine(
            &[
                [-0.8, 0.0, 0.0, 10.0],
                [0.0, 0.7, 0.0, -20.0],
                [0.0, 0.0, 3.0, 5.0],
            ],
            1,
        );
        let header = Header {
            dims: [nx, ny, nz],
            datatype: 4,
            scl_slope: 1.0,
            scl_inter: 0.0,
            intent_code: 0,
            geometry: &g,
        };
        write_volume_with(path, &header, &vox).expect("write scan");
    }

    #[test]
    fn a_volume_is_the_slices_segmented_one_by_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("scan.nii.gz");
        write_scan(&path);
        let device = Device::flex();
        let model = TgcNet::new(&TgcNetConfig::tiny(), &device).expect("model");
        let s = Segmenter::new(model, &device).expect("segmenter");
        let vol = ScanVolume::open(&path).expect("open");
        assert!(vol.layout.flip_v && !vol.layout.flip_h && !vol.layout.transposed);
        let options = SegmentOptions {
            decode: DecodeOptions {
                window: Some(Window::MEDIASTINUM),
            },
            ..SegmentOptions::default()
        };
        // An untrained model: threshold at slice 2's median probability so that masks are not empty.
        let singles: Vec<_> = (0..vol.n_slices())
            .map(|k| {
                let plane = vol.slice(k, &options.decode).expect("slice");
                s.segment(&plane, CAPTION, &options).expect("segment")
            })
            .collect();
        let mut probs = singles[2].probabilities.clone();
        probs.sort_by(f32::total_cmp);
        let threshold = probs[probs.len() / 2];
        let vopts = VolumeOptions {
            batch_size: 2,
            threshold,
        };
        let r = s
            .segment_volume(&vol, CAPTION, &options, &vopts)
            .expect("volume");
        assert_eq!(r.dims, [20, 16, 5]);
        assert!(r.voxels.iter().all(|&v| v <= 1));
        assert!(r.foreground() > 0 && r.foreground() < r.voxels.len());
        for (k, single) in singles.iter().enumerate() {
            let got = vol.slice_of(&r.voxels, k);
            for (p, (&v, &prob)) in got.iter().zip(&single.probabilities).enumerate() {
                // Batched and single passes agree to ~1e-6; only a pixel at the threshold may differ.
                if (v == 1) != (prob > threshold) {
                    assert!(
                        (prob - threshold).abs() < 1e-4,
                        "slice {k} pixel {p}: {prob}"
                    );
                }
            }
        }
        let strip = overlay_strip(&vol, &r, &[0, 2, 4], 2, &options).expect("strip");
        assert_eq!(strip.dimensions(), (2 * 20 + 2, 2 * 16 + 2));
    }
}
