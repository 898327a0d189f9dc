//! Image preprocessing identical to HF `CLIPImageProcessor`: shortest side resized bicubically to the model
//! size, centre crop, /255, CLIP mean/std. Gray images are replicated to three channels.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use image::{DynamicImage, RgbImage};

use crate::error::{ClipError, Result};

/// Per-channel mean (RGB) CLIP normalises pixels in [0, 1] with.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// Per-channel standard deviation (RGB) CLIP normalises pixels in [0, 1] with.
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// Decodes a PNG or JPEG file (8/16-bit, gray or colour) into 8-bit RGB.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| ClipError::io(path, e))?;
    let img = image::load_from_memory(&bytes).map_err(|e| ClipError::Image {
        path: path.into(),
        message: e.to_string(),
    })?;
    Ok(to_rgb8(img))
}

/// Gray is replicated to three channels; 16-bit is scaled to 8-bit.
pub fn to_rgb8(img: DynamicImage) -> RgbImage {
    img.to_rgb8()
}

/// Resize the shortest side to `size` (bicubic, as PIL's BICUBIC which HF uses), then centre-crop
/// `size`×`size`.
pub fn resize_center_crop(img: &RgbImage, size: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (nw, nh) = if w <= h {
        (size, (size as f64 * h as f64 / w as f64) as usize)
    } else {
        ((size as f64 * w as f64 / h as f64) as usize, size)
    };
    let resized = if (nw, nh) == (w, h) {
        img.clone()
    } else {
        resize_bicubic_pil(img, nw, nh)
    };
    let top = (nh.saturating_sub(size)) / 2;
    let left = (nw.saturating_sub(size)) / 2;
    image::imageops::crop_imm(&resized, left as u32, top as u32, size as u32, size as u32)
        .to_image()
}

/// PIL's `Image.resize(..., BICUBIC)` for 8-bit images, reproduced exactly: Keys cubic (a = -0.5) with the
/// support widened by the scale when downsampling (antialiasing), 22-bit fixed-point coefficients, a
/// horizontal pass rounded to 8 bits, then a vertical pass. HF's `CLIPImageProcessor`, OpenAI's and
/// OpenCLIP's preprocessing all resize with PIL, so matching it bit for bit makes embeddings match.
pub fn resize_bicubic_pil(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src: Vec<u8> = img.as_raw().clone();
    let horizontal = if out_w != w {
        let (bounds, coeffs, k) = pil_coeffs(w, out_w);
        let mut out = vec![0u8; out_w * h * 3];
        for y in 0..h {
            for (xx, &(xmin, xlen)) in bounds.iter().enumerate() {
                let kk = &coeffs[xx * k..xx * k + xlen];
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (x, &kv) in kk.iter().enumerate() {
                        ss += src[(y * w + xmin + x) * 3 + c] as i64 * kv;
                    }
                    out[(y * out_w + xx) * 3 + c] = clip8(ss);
                }
            }
        }
        out
    } else {
        src
    };
    let out = if out_h != h {
        let (bounds, coeffs, k) = pil_coeffs(h, out_h);
        let mut out = vec![0u8; out_w * out_h * 3];
        for (yy, &(ymin, ylen)) in bounds.iter().enumerate() {
            let kk = &coeffs[yy * k..yy * k + ylen];
            for x in 0..out_w {
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (y, &kv) in kk.iter().enumerate() {
                        ss += horizontal[((ymin + y) * out_w + x) * 3 + c] as i64 * kv;
                    }
                    out[(yy * out_w + x) * 3 + c] = clip8(ss);
                }
            }
        }
        out
    } else {
        horizontal
    };
    // Sizes were computed from the buffer, so this cannot fail; fall back to a blank image regardless.
    RgbImage::from_raw(out_w as u32, out_h as u32, out)
        .unwrap_or_else(|| RgbImage::new(out_w as u32, out_h as u32))
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn clip8(ss: i64) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

fn bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc`: per output pixel (first input index, tap count),
/// and `k` fixed-point taps per output pixel.
fn pil_coeffs(in_size: usize, out_size: usize) -> (Vec<(usize, usize)>, Vec<i64>, usize) {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let k = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut coeffs = vec![0i64; out_size * k];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C casts truncate toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize - xmin;
        let w: Vec<f64> = (0..xmax)
            .map(|x| bicubic((x as f64 + xmin as f64 - center + 0.5) * ss))
            .collect();
        let ww: f64 = w.iter().sum();
        for (x, wx) in w.iter().enumerate() {
            let v = if ww != 0.0 { wx / ww } else { *wx };
            let f = v * (1i64 << PRECISION_BITS) as f64;
            coeffs[xx * k + x] = if v < 0.0 {
                (f - 0.5) as i64
            } else {
                (f + 0.5) as i64
            };
        }
        bounds.push((xmin, xmax));
    }
    (bounds, coeffs, k)
}

/// CHW floats: /255 then (x - mean) / std.
pub fn normalize(img: &RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0.0f32; 3 * w * h];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            let v = p.0[c] as f32 / 255.0;
            out[c * w * h + y as usize * w + x as usize] = (v - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
    out
}

/// Reads, resizes, crops and normalises a batch of image files: [B, 3, size, size].
pub fn load_batch(paths: &[impl AsRef<Path>], size: usize, device: &Device) -> Result<Tensor<4>> {
    let mut data = Vec::with_capacity(paths.len() * 3 * size * size);
    for p in paths {
        let img = read_rgb(p.as_ref())?;
        data.extend(normalize(&resize_center_crop(&img, size)));
    }
    Ok(Tensor::from_data(
        TensorData::new(data, [paths.len(), 3, size, size]),
        device,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_is_replicated_and_cropped_centrally() {
        let mut g = image::GrayImage::new(4, 6);
        for y in 0..6 {
            for x in 0..4 {
                g.put_pixel(x, y, image::Luma([(y * 40) as u8]));
            }
        }
        let rgb = to_rgb8(DynamicImage::ImageLuma8(g));
        assert_eq!(rgb.get_pixel(1, 2).0, [80, 80, 80]);
        let c = resize_center_crop(&rgb, 4);
        assert_eq!((c.width(), c.height()), (4, 4));
        // 6 rows cropped to 4: rows 1..5 survive.
        assert_eq!(c.get_pixel(0, 0).0[0], 40);
        let n = normalize(&c);
        assert!((n[0] - (40.0 / 255.0 - CLIP_MEAN[0]) / CLIP_STD[0]).abs() < 1e-6);
    }

    #[test]
    fn not_an_image_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.png");
        std::fs::write(&p, b"this is not a png").expect("write");
        let e = read_rgb(&p).expect_err("must fail").to_string();
        assert!(e.contains("x.png"), "{e}");
    }
}
