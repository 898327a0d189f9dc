//! Helpers shared by the integration tests: tiny images and masks written into temp dirs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// A `w`×`h` gray PNG with a deterministic pattern.
pub fn gray_png(path: &Path, w: u32, h: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([((x * 13 + y * 7 + seed * 31) % 256) as u8])
    });
    img.save(path).unwrap();
}

/// A `w`×`h` mask PNG with `value` in the rectangle [x0, x1) × [y0, y1).
pub fn mask_png(path: &Path, w: u32, h: u32, rect: (u32, u32, u32, u32), value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (x0, y0, x1, y1) = rect;
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([if x >= x0 && x < x1 && y >= y0 && y < y1 {
            value
        } else {
            0
        }])
    });
    img.save(path).unwrap();
}

pub fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

pub const CAP: &str =
    "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.";

/// A manifest dataset of `n` 16×16 samples in `dir` (train.csv), masks with a 4×4 lesion.
pub fn manifest_dataset(dir: &Path, n: usize) {
    let mut csv = String::from("image,mask,text\n");
    for i in 0..n {
        gray_png(&dir.join(format!("img/s{i}.png")), 16, 16, i as u32);
        mask_png(
            &dir.join(format!("mask/s{i}.png")),
            16,
            16,
            (4, 4, 8, 8),
            255,
        );
        csv.push_str(&format!("img/s{i}.png,mask/s{i}.png,\"{CAP}\"\n"));
    }
    write(&dir.join("train.csv"), csv);
}
