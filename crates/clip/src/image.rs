//! Image preprocessing identical to HF `CLIPImageProcessor`: shortest side resized bicubically to the model
//! size, centre crop, /255, CLIP mean/std. Gray images are replicated to three channels.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};

use crate::error::{ClipError, Result};

pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
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
        image::imageops::resize(img, nw as u32, nh as u32, FilterType::CatmullRom)
    };
    let top = (nh.saturating_sub(size)) / 2;
    let left = (nw.saturating_sub(size)) / 2;
    image::imageops::crop_imm(&resized, left as u32, top as u32, size as u32, size as u32).to_image()
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
