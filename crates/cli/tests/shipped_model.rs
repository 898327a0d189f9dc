//! The model a new user downloads with the repository, `checkpoints/qata-small.safetensors`: it loads (every
//! tensor used, every parameter found), carries the defaults its docs promise (threshold 0.4, test-time
//! views 160 px + mirrored), and segments a picture at the picture's own size, with those defaults and with
//! them overridden.

use std::path::{Path, PathBuf};

use image::GenericImageView;

mod common;

use common::{bin, ok};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../checkpoints/qata-small.safetensors")
}

#[test]
fn shipped_model_reports_its_defaults() {
    let info = ok(bin().arg("info").arg("--checkpoint").arg(shipped()));
    assert!(info.contains("10,874,661"), "{info}");
    assert!(info.contains("`image` convention"), "{info}");
    assert!(
        info.contains(
            "default to threshold 0.4 and test-time views: model side + 160 px + mirrored"
        ),
        "{info}"
    );
}

/// Fraction of the mask's pixels that are foreground; panics unless every pixel is 0 or 255.
fn foreground(mask: &Path, side: u32) -> f64 {
    let img = image::open(mask).expect("mask png");
    assert_eq!(img.dimensions(), (side, side), "{}", mask.display());
    let px = img.to_luma8().into_raw();
    assert!(px.iter().all(|&v| v == 0 || v == 255), "mask not binary");
    px.iter().filter(|&&v| v == 255).count() as f64 / px.len() as f64
}

#[test]
fn shipped_model_segments_a_picture_at_its_own_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    ok(bin()
        .args(["data", "phantom", "--size", "96", "--seed", "5"])
        .args(["--n-train", "1", "--n-val", "1", "--out"])
        .arg(&data));
    let text =
        "Bilateral pulmonary infection, two infected areas, middle left lung and lower right lung.";
    let run = |name: &str, extra: &[&str]| -> f64 {
        let out = dir.path().join(format!("{name}.png"));
        ok(bin()
            .arg("infer")
            .arg("--checkpoint")
            .arg(shipped())
            .arg("--image")
            .arg(data.join("images/phantom_00001.png"))
            .args(["--text", text])
            .args(extra)
            .arg("--out")
            .arg(&out));
        foreground(&out, 96)
    };
    // Each run is checked for a binary mask at the picture's side (96, not the model's 224).
    run("defaults", &[]);
    let one_view = run("one-view", &["--tta", "none", "--threshold", "0.5"]);
    // A stricter threshold on the same single view cannot add foreground.
    let strict = run("strict", &["--tta", "none", "--threshold", "0.9"]);
    assert!(
        strict <= one_view,
        "threshold 0.9 gave {strict}, 0.5 gave {one_view}"
    );
}
