//! Image and mask transforms: resizing (images bilinear or bicubic with PIL-style antialiasing when
//! shrinking, masks nearest), a small random affine (rotation, scale, translation; images bilinear,
//! masks nearest, zero padding), brightness/contrast, an optional horizontal flip (the caption's
//! "left"/"right" must then be swapped, see [`crate::caption::swap_left_right`]), and the final
//! gray → 3-channel replication with CLIP mean/std.
//!
//! All randomness comes from [`AugmentParams::sample`] with a caller-provided [`Rng`], so a sample's
//! augmentation depends only on its seed.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::imageio::Plane;
use crate::rng::Rng;

/// CLIP's per-channel mean and standard deviation (on [0, 1] intensities), from the CLIP crate.
/// CLIP's per-channel input mean (RGB), the statistics of its training images. The same numbers as
/// `tgcnet_clip::image::CLIP_MEAN` (a test in `tgcnet-model` checks), kept here so that the data crate
/// needs no CLIP code.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel input standard deviation (RGB); see [`CLIP_MEAN`].
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// Interpolation for image resizing (masks always use nearest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// The nearest pixel.
    Nearest,
    /// Bilinear, antialiased when shrinking.
    #[default]
    Bilinear,
    /// Cubic convolution with a = −0.5 (as PIL's BICUBIC).
    Bicubic,
}

impl FromStr for Interpolation {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s.to_ascii_lowercase().as_str() {
            "nearest" => Ok(Interpolation::Nearest),
            "bilinear" | "linear" => Ok(Interpolation::Bilinear),
            "bicubic" | "cubic" => Ok(Interpolation::Bicubic),
            _ => Err(DataError::invalid(
                "interpolation",
                format!("`{s}` (expected nearest, bilinear or bicubic)"),
            )),
        }
    }
}

fn kernel(interp: Interpolation, x: f64) -> f64 {
    let x = x.abs();
    match interp {
        Interpolation::Nearest => {
            if x < 0.5 {
                1.0
            } else {
                0.0
            }
        }
        Interpolation::Bilinear => (1.0 - x).max(0.0),
        Interpolation::Bicubic => {
            let a = -0.5;
            if x < 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * a
            } else {
                0.0
            }
        }
    }
}

/// Per output index: the first source index and the normalised weights.
fn resample_weights(src: usize, dst: usize, interp: Interpolation) -> Vec<(usize, Vec<f32>)> {
    let scale = src as f64 / dst as f64;
    let fscale = scale.max(1.0);
    let support = match interp {
        Interpolation::Nearest => 0.5,
        Interpolation::Bilinear => 1.0,
        Interpolation::Bicubic => 2.0,
    } * fscale;
    (0..dst)
        .map(|x| {
            let center = (x as f64 + 0.5) * scale;
            if interp == Interpolation::Nearest {
                let i = (center.floor() as usize).min(src - 1);
                return (i, vec![1.0]);
            }
            let lo = ((center - support).floor().max(0.0)) as usize;
            let hi = (((center + support).ceil()) as usize).min(src);
            let mut w: Vec<f64> = (lo..hi)
                .map(|i| kernel(interp, (i as f64 + 0.5 - center) / fscale))
                .collect();
            let sum: f64 = w.iter().sum();
            if sum != 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            }
            (lo, w.into_iter().map(|v| v as f32).collect())
        })
        .collect()
}

/// Resizes a plane to `width`×`height` (separable; antialiased when shrinking; bicubic results are
/// clamped to [0, 1]). Returns a clone when the size is unchanged.
pub fn resize_plane(p: &Plane, width: usize, height: usize, interp: Interpolation) -> Plane {
    if p.width == width && p.height == height {
        return p.clone();
    }
    let wx = resample_weights(p.width, width, interp);
    let wy = resample_weights(p.height, height, interp);
    let mut data = vec![0f32; p.channels * width * height];
    let mut tmp = vec![0f32; p.height * width];
    for c in 0..p.channels {
        let src = &p.data[c * p.width * p.height..(c + 1) * p.width * p.height];
        for y in 0..p.height {
            let row = &src[y * p.width..(y + 1) * p.width];
            for (x, (lo, w)) in wx.iter().enumerate() {
                tmp[y * width + x] = w.iter().zip(&row[*lo..]).map(|(a, b)| a * b).sum();
            }
        }
        let out = &mut data[c * width * height..(c + 1) * width * height];
        for (y, (lo, w)) in wy.iter().enumerate() {
            let orow = &mut out[y * width..(y + 1) * width];
            for (k, wk) in w.iter().enumerate() {
                let srow = &tmp[(lo + k) * width..(lo + k + 1) * width];
                for (o, s) in orow.iter_mut().zip(srow) {
                    *o += wk * s;
                }
            }
        }
    }
    if interp == Interpolation::Bicubic {
        data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    }
    Plane {
        channels: p.channels,
        width,
        height,
        data,
    }
}

/// Nearest-neighbour resize of a `[src_h, src_w]` mask to `[height, width]`.
pub fn resize_mask(m: &[u8], src_w: usize, src_h: usize, width: usize, height: usize) -> Vec<u8> {
    if src_w == width && src_h == height {
        return m.to_vec();
    }
    let xs: Vec<usize> = (0..width)
        .map(|x| {
            ((((x as f64 + 0.5) * src_w as f64 / width as f64).floor()) as usize).min(src_w - 1)
        })
        .collect();
    let mut out = Vec::with_capacity(width * height);
    for y in 0..height {
        let sy =
            ((((y as f64 + 0.5) * src_h as f64 / height as f64).floor()) as usize).min(src_h - 1);
        let row = &m[sy * src_w..(sy + 1) * src_w];
        out.extend(xs.iter().map(|&x| row[x]));
    }
    out
}

/// Ranges of the random augmentation (the `[train.augmentation]` table of a run config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Rotation uniform in ±`rotate_deg` degrees.
    pub rotate_deg: f32,
    /// Isotropic scale uniform in [`scale_min`, `scale_max`].
    pub scale_min: f32,
    /// Upper bound of the scale.
    pub scale_max: f32,
    /// Translation uniform in ±`translate` of the image size, per axis.
    pub translate: f32,
    /// Additive brightness uniform in ±`brightness` (on [0, 1] intensities).
    pub brightness: f32,
    /// Contrast factor uniform in [1 − `contrast`, 1 + `contrast`] around the image mean.
    pub contrast: f32,
    /// Probability of a horizontal flip; the caption's "left"/"right" are swapped with it. 0 by default
    /// (our reconstruction: flips are allowed only together with the swap, and off unless asked for).
    pub hflip_prob: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            rotate_deg: 10.0,
            scale_min: 0.9,
            scale_max: 1.1,
            translate: 0.05,
            brightness: 0.1,
            contrast: 0.1,
            hflip_prob: 0.0,
        }
    }
}

/// One draw of the augmentation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AugmentParams {
    /// Rotation in degrees.
    pub angle_deg: f32,
    /// Isotropic scale factor.
    pub scale: f32,
    /// Translation as a fraction of the width / height.
    pub tx: f32,
    /// Vertical translation as a fraction of the height.
    pub ty: f32,
    /// Added to [0, 1] intensities.
    pub brightness: f32,
    /// Contrast factor around the image mean.
    pub contrast: f32,
    /// Flip horizontally (and swap the caption's sides).
    pub hflip: bool,
}

impl AugmentParams {
    /// No change.
    pub fn identity() -> AugmentParams {
        AugmentParams {
            angle_deg: 0.0,
            scale: 1.0,
            tx: 0.0,
            ty: 0.0,
            brightness: 0.0,
            contrast: 1.0,
            hflip: false,
        }
    }

    /// Draws parameters from `cfg` (always the same number of draws, so streams stay aligned).
    pub fn sample(cfg: &AugmentConfig, rng: &mut Rng) -> AugmentParams {
        let angle_deg = rng.range(-cfg.rotate_deg, cfg.rotate_deg);
        let scale = rng.range(cfg.scale_min, cfg.scale_max);
        let tx = rng.range(-cfg.translate, cfg.translate);
        let ty = rng.range(-cfg.translate, cfg.translate);
        let brightness = rng.range(-cfg.brightness, cfg.brightness);
        let contrast = rng.range(1.0 - cfg.contrast, 1.0 + cfg.contrast);
        let hflip = rng.f32() < cfg.hflip_prob;
        AugmentParams {
            angle_deg,
            scale,
            tx,
            ty,
            brightness,
            contrast,
            hflip,
        }
    }

    fn is_geometric_identity(&self) -> bool {
        self.angle_deg == 0.0
            && self.scale == 1.0
            && self.tx == 0.0
            && self.ty == 0.0
            && !self.hflip
    }

    /// The inverse map as an affine function of the output pixel index: source (x, y) in pixel-index
    /// coordinates (pixel i's centre at i) = `[m[0]·x + m[1]·y + m[2], m[3]·x + m[4]·y + m[5]]`.
    fn inverse_map(&self, w: usize, h: usize) -> [f32; 6] {
        let (sin, cos) = self.angle_deg.to_radians().sin_cos();
        let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
        let (tx, ty) = (self.tx * w as f32, self.ty * h as f32);
        let inv_s = 1.0 / self.scale;
        // px = x + 0.5 (or w - x - 0.5 when flipped), py = y + 0.5;
        // dx = px - cx - tx, dy = py - cy - ty;
        // sx = (cos dx + sin dy) / s + cx - 0.5, sy = (-sin dx + cos dy) / s + cy - 0.5.
        let (fx, px0) = if self.hflip {
            (-1.0, w as f32 - 0.5)
        } else {
            (1.0, 0.5)
        };
        let dx0 = px0 - cx - tx;
        let dy0 = 0.5 - cy - ty;
        [
            cos * fx * inv_s,
            sin * inv_s,
            (cos * dx0 + sin * dy0) * inv_s + cx - 0.5,
            -sin * fx * inv_s,
            cos * inv_s,
            (-sin * dx0 + cos * dy0) * inv_s + cy - 0.5,
        ]
    }
}

/// `floor` without a libm call (x86-64 baseline has no SSE4.1 rounding); exact for |x| < 2^31.
#[inline]
fn floor_i(x: f32) -> isize {
    let i = x as isize;
    if (i as f32) > x { i - 1 } else { i }
}

/// Applies the affine (bilinear, zero outside) and brightness/contrast to a plane in [0, 1].
pub fn augment_plane(p: &Plane, a: &AugmentParams) -> Plane {
    let (w, h) = (p.width, p.height);
    let mut out = if a.is_geometric_identity() {
        p.clone()
    } else {
        let m = a.inverse_map(w, h);
        let mut data = vec![0f32; p.data.len()];
        let (wi, hi) = (w as isize, h as isize);
        for c in 0..p.channels {
            let src = &p.data[c * w * h..(c + 1) * w * h];
            let dst = &mut data[c * w * h..(c + 1) * w * h];
            let at = |xi: isize, yi: isize| -> f32 {
                if xi < 0 || yi < 0 || xi >= wi || yi >= hi {
                    0.0
                } else {
                    src[yi as usize * w + xi as usize]
                }
            };
            for y in 0..h {
                let (yf, row) = (y as f32, &mut dst[y * w..(y + 1) * w]);
                let mut sx = m[1] * yf + m[2];
                let mut sy = m[4] * yf + m[5];
                for o in row.iter_mut() {
                    let (x0, y0) = (floor_i(sx), floor_i(sy));
                    let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
                    let v = if x0 >= 0 && y0 >= 0 && x0 + 1 < wi && y0 + 1 < hi {
                        let i = y0 as usize * w + x0 as usize;
                        let (a00, a01) = (src[i], src[i + 1]);
                        let (a10, a11) = (src[i + w], src[i + w + 1]);
                        (1.0 - fy) * (a00 + fx * (a01 - a00)) + fy * (a10 + fx * (a11 - a10))
                    } else if x0 < -1 || y0 < -1 || x0 >= wi || y0 >= hi {
                        0.0
                    } else {
                        (1.0 - fy) * ((1.0 - fx) * at(x0, y0) + fx * at(x0 + 1, y0))
                            + fy * ((1.0 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1))
                    };
                    *o = v;
                    sx += m[0];
                    sy += m[3];
                }
            }
        }
        Plane {
            channels: p.channels,
            width: w,
            height: h,
            data,
        }
    };
    if a.brightness != 0.0 || a.contrast != 1.0 {
        let mean = if out.data.is_empty() {
            0.0
        } else {
            out.data.iter().sum::<f32>() / out.data.len() as f32
        };
        let (k, b) = (a.contrast, mean * (1.0 - a.contrast) + a.brightness);
        for v in out.data.iter_mut() {
            *v = (*v * k + b).clamp(0.0, 1.0);
        }
    }
    out
}

/// Applies the affine of `a` to a `[h, w]` mask (nearest, zero outside).
pub fn augment_mask(m: &[u8], w: usize, h: usize, a: &AugmentParams) -> Vec<u8> {
    if a.is_geometric_identity() {
        return m.to_vec();
    }
    let t = a.inverse_map(w, h);
    let mut out = vec![0u8; w * h];
    let (wi, hi) = (w as isize, h as isize);
    for y in 0..h {
        let yf = y as f32;
        let mut sx = t[1] * yf + t[2] + 0.5;
        let mut sy = t[4] * yf + t[5] + 0.5;
        for o in out[y * w..(y + 1) * w].iter_mut() {
            let (xi, yi) = (floor_i(sx), floor_i(sy));
            if xi >= 0 && yi >= 0 && xi < wi && yi < hi {
                *o = m[yi as usize * w + xi as usize];
            }
            sx += t[0];
            sy += t[3];
        }
    }
    out
}

/// CLIP input: gray is replicated to three channels, then `(v - CLIP_MEAN[c]) / CLIP_STD[c]`.
/// Returns `[3, height, width]`.
pub fn to_clip(p: &Plane) -> Vec<f32> {
    let n = p.width * p.height;
    let mut out = vec![0f32; 3 * n];
    for c in 0..3 {
        let src = if p.channels == 1 {
            &p.data[..n]
        } else {
            &p.data[c * n..(c + 1) * n]
        };
        let (m, s) = (CLIP_MEAN[c], 1.0 / CLIP_STD[c]);
        for (o, v) in out[c * n..(c + 1) * n].iter_mut().zip(src) {
            *o = (v - m) * s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> Plane {
        Plane {
            channels: 1,
            width: w,
            height: h,
            data: (0..w * h)
                .map(|i| (i % w) as f32 / (w - 1) as f32)
                .collect(),
        }
    }

    #[test]
    fn resize_keeps_constant_and_ramp() {
        let c = Plane {
            channels: 3,
            width: 10,
            height: 7,
            data: vec![0.25; 210],
        };
        for interp in [
            Interpolation::Bilinear,
            Interpolation::Bicubic,
            Interpolation::Nearest,
        ] {
            for (w, h) in [(5, 3), (23, 17)] {
                let r = resize_plane(&c, w, h, interp);
                assert_eq!(r.data.len(), 3 * w * h);
                assert!(r.data.iter().all(|v| (v - 0.25).abs() < 1e-5));
            }
        }
        let r = resize_plane(&ramp(20, 4), 10, 4, Interpolation::Bilinear);
        for x in 1..10 {
            assert!(r.data[x] > r.data[x - 1]);
        }
    }

    #[test]
    fn mask_nearest() {
        let m = vec![0, 1, 1, 0];
        assert_eq!(
            resize_mask(&m, 2, 2, 4, 4)
                .iter()
                .filter(|&&v| v == 1)
                .count(),
            8
        );
        assert_eq!(resize_mask(&m, 2, 2, 1, 1).len(), 1);
    }

    #[test]
    fn flip_mirrors_exactly() {
        let p = ramp(8, 3);
        let a = AugmentParams {
            hflip: true,
            ..AugmentParams::identity()
        };
        let f = augment_plane(&p, &a);
        for y in 0..3 {
            for x in 0..8 {
                assert!((f.data[y * 8 + x] - p.data[y * 8 + 7 - x]).abs() < 1e-6);
            }
        }
        let m: Vec<u8> = (0..24).map(|i| (i % 8 < 2) as u8).collect();
        let fm = augment_mask(&m, 8, 3, &a);
        assert_eq!(fm[7], 1);
        assert_eq!(fm[0], 0);
    }

    #[test]
    fn translation_moves_content() {
        let mut m = vec![0u8; 100];
        m[5 * 10 + 5] = 1;
        let a = AugmentParams {
            tx: 0.2,
            ..AugmentParams::identity()
        };
        let out = augment_mask(&m, 10, 10, &a);
        assert_eq!(out[5 * 10 + 7], 1);
        assert_eq!(out.iter().map(|&v| v as u32).sum::<u32>(), 1);
    }

    #[test]
    fn rotation_by_90_degrees_is_exact() {
        let mut m = vec![0u8; 16];
        m[4 + 3] = 1; // (x 3, y 1)
        let a = AugmentParams {
            angle_deg: 90.0,
            ..AugmentParams::identity()
        };
        let out = augment_mask(&m, 4, 4, &a);
        assert_eq!(out[3 * 4 + 2], 1, "{out:?}"); // (x 2, y 3)
        assert_eq!(out.iter().map(|&v| v as u32).sum::<u32>(), 1);
        let p = Plane {
            channels: 1,
            width: 4,
            height: 4,
            data: m.iter().map(|&v| v as f32).collect(),
        };
        let r = augment_plane(&p, &a);
        assert!((r.data[3 * 4 + 2] - 1.0).abs() < 1e-5);
        // Scale 2 about the centre: the central 2x2 block covers the image.
        let a = AugmentParams {
            scale: 2.0,
            ..AugmentParams::identity()
        };
        let mut c = vec![0u8; 16];
        for i in [5, 6, 9, 10] {
            c[i] = 1;
        }
        assert_eq!(augment_mask(&c, 4, 4, &a), vec![1; 16]);
    }

    #[test]
    fn clip_normalisation() {
        let p = Plane {
            channels: 1,
            width: 1,
            height: 1,
            data: vec![0.5],
        };
        let v = to_clip(&p);
        for c in 0..3 {
            assert!((v[c] - (0.5 - CLIP_MEAN[c]) / CLIP_STD[c]).abs() < 1e-6);
        }
    }
}
