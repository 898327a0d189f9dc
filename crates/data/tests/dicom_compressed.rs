//! Compressed DICOM: each file of tests/fixtures/dicom_compressed/ (written by
//! scripts/fixtures/make_dicom_fixtures.py with pydicom, libjpeg-turbo and OpenJPEG) decodes to the same
//! stored pixels as its uncompressed twin (lossless syntaxes exactly, lossy ones within the script's
//! tolerance), through `read_dicom`, `read_image` and `decode_image_bytes` (the HTTP service's path),
//! with rescale, windows and MONOCHROME1 inversion applied as for uncompressed files.

use std::path::{Path, PathBuf};

use tgcnet_data::dicom::{read_dicom, read_dicom_header};
use tgcnet_data::imageio::{DecodeOptions, SliceRef, decode_image_bytes, read_image};
use tgcnet_data::{Plane, Window};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dicom_compressed")
        .join(name)
}

fn frame(i: usize) -> Option<SliceRef> {
    Some(SliceRef { axis: 2, index: i })
}

/// Every way of decoding `name` gives what the twin gives.
fn same_as_twin(name: &str, twin: &str, frames: usize) {
    let (p, t) = (fixture(name), fixture(twin));
    let (d, dt) = (read_dicom(&p).unwrap(), read_dicom(&t).unwrap());
    assert_eq!(
        (d.rows, d.cols, d.frames, d.samples_per_pixel),
        (dt.rows, dt.cols, dt.frames, dt.samples_per_pixel),
        "{name}"
    );
    assert_eq!(d.frames, frames, "{name}");
    assert!(d.pixels == dt.pixels, "{name}: stored values differ");
    assert_eq!(
        (d.rescale_slope, d.rescale_intercept, &d.photometric),
        (dt.rescale_slope, dt.rescale_intercept, &dt.photometric)
    );
    for opts in [
        DecodeOptions::default(),
        DecodeOptions {
            window: Some(Window::MEDIASTINUM),
        },
        DecodeOptions { window: None },
    ] {
        for f in 0..frames {
            let a = read_image(&p, frame(f), &opts).unwrap();
            assert_eq!(
                a,
                read_image(&t, frame(f), &opts).unwrap(),
                "{name} frame {f}"
            );
        }
        let bytes = std::fs::read(&p).unwrap();
        let up = decode_image_bytes(Path::new(name), &bytes, &opts, 1 << 20).unwrap();
        assert_eq!(up, read_image(&t, None, &opts).unwrap(), "{name} uploaded");
    }
}

#[test]
fn lossless_syntaxes_decode_to_their_twins() {
    for name in [
        "ct16_rle.dcm",
        "ct16_jpeg_lossless_sv1.dcm",
        "ct16_jpeg_lossless_p7.dcm",
        "ct16_j2k_lossless.dcm",
    ] {
        same_as_twin(name, "ct16_uncompressed.dcm", 1);
    }
    for name in ["ct16s_rle.dcm", "ct16s_j2k_lossless.dcm"] {
        same_as_twin(name, "ct16s_uncompressed.dcm", 1);
    }
    for name in ["ct16_2frames_rle.dcm", "ct16_2frames_jpeg_lossless_sv1.dcm"] {
        same_as_twin(name, "ct16_2frames_uncompressed.dcm", 2);
    }
    same_as_twin(
        "dx16_mono1_jpeg_lossless_sv1.dcm",
        "dx16_mono1_uncompressed.dcm",
        1,
    );
}

#[test]
fn rescale_and_transfer_syntax_are_reported() {
    let p = fixture("ct16_j2k_lossless.dcm");
    let d = read_dicom(&p).unwrap();
    assert_eq!(d.transfer_syntax, "1.2.840.10008.1.2.4.90");
    assert_eq!((d.rescale_slope, d.rescale_intercept), (1.5, -1024.0));
    // The bone block (stored ≈ 3500) is ≈ 4226 HU, air (≈ 16) ≈ −1000 HU.
    let bone = d.pixels[18 * 32 + 15];
    assert!((bone - 3500.0).abs() <= 9.0, "{bone}");
    assert_eq!(d.rescale(bone), 1.5 * bone - 1024.0);
    let h = read_dicom_header(&p).unwrap();
    assert_eq!((h.rows, h.cols, h.frames), (24, 32, 1));
    assert_eq!(h.geometry.pixel_spacing, Some([0.7, 0.7]));
    assert_eq!(h.geometry.position, Some([-11.2, -8.4, 30.0]));
}

#[test]
fn monochrome1_is_inverted_for_compressed_files_too() {
    let opts = DecodeOptions::default();
    let one = read_image(&fixture("dx16_mono1_jpeg_lossless_sv1.dcm"), None, &opts).unwrap();
    let two = read_image(&fixture("dx16_mono2_uncompressed.dcm"), None, &opts).unwrap();
    let inverted: Vec<f32> = two.data.iter().map(|v| 1.0 - v).collect();
    assert_eq!(one.data, inverted);
    // Not trivially constant: the window spreads the image over [0, 1].
    let (lo, hi) = one
        .data
        .iter()
        .fold((1f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(lo < 0.2 && hi > 0.8, "{lo} {hi}");
}

fn max_stored_difference(a: &str, b: &str) -> f32 {
    let (x, y) = (
        read_dicom(&fixture(a)).unwrap(),
        read_dicom(&fixture(b)).unwrap(),
    );
    assert_eq!(x.pixels.len(), y.pixels.len());
    x.pixels
        .iter()
        .zip(&y.pixels)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max)
}

#[test]
fn lossy_syntaxes_are_within_the_stated_tolerance() {
    // Tolerances of make_dicom_fixtures.py (stored values): JPEG baseline 8-bit 12, JPEG 2000 16-bit 40.
    let jpeg = max_stored_difference("ct8_jpeg_baseline.dcm", "ct8_uncompressed.dcm");
    assert!(jpeg <= 12.0, "JPEG baseline: {jpeg}");
    let j2k = max_stored_difference("ct16_j2k_lossy.dcm", "ct16_uncompressed.dcm");
    assert!(j2k <= 40.0, "JPEG 2000: {j2k}");
    let opts = DecodeOptions::default();
    let a: Plane = read_image(&fixture("ct8_jpeg_baseline.dcm"), None, &opts).unwrap();
    let b = read_image(&fixture("ct8_uncompressed.dcm"), None, &opts).unwrap();
    assert_eq!(
        (a.width, a.height, a.channels),
        (b.width, b.height, b.channels)
    );
}

#[test]
fn unsupported_syntaxes_name_the_file_and_the_syntax() {
    let p = fixture("ct16_jpeg_ls.dcm");
    for e in [
        read_dicom(&p).unwrap_err(),
        read_image(&p, None, &DecodeOptions::default()).unwrap_err(),
        decode_image_bytes(
            Path::new("ct16_jpeg_ls.dcm"),
            &std::fs::read(&p).unwrap(),
            &DecodeOptions::default(),
            1 << 20,
        )
        .unwrap_err(),
    ] {
        let m = e.to_string();
        assert!(
            m.contains("1.2.840.10008.1.2.4.80") && m.contains("JPEG-LS"),
            "{m}"
        );
        assert_eq!(m.matches("ct16_jpeg_ls.dcm").count(), 1, "{m}");
    }
}

#[test]
fn uploads_over_the_pixel_limit_are_refused_before_decoding() {
    let bytes = std::fs::read(fixture("ct16_2frames_jpeg_lossless_sv1.dcm")).unwrap();
    // 32 x 24 x 2 frames = 1,536 pixels.
    let e = decode_image_bytes(Path::new("up.dcm"), &bytes, &DecodeOptions::default(), 1000)
        .unwrap_err();
    assert!(e.to_string().contains("limit"), "{e}");
    // A corrupt code stream (the headers after the first start-of-image marker overwritten) is an error
    // naming the upload, not a panic.
    let mut broken = bytes.clone();
    let soi = broken
        .windows(3)
        .position(|w| w == [0xff, 0xd8, 0xff])
        .unwrap();
    for b in &mut broken[soi + 2..soi + 40] {
        *b = 0x5a;
    }
    let e = decode_image_bytes(
        Path::new("up.dcm"),
        &broken,
        &DecodeOptions::default(),
        1 << 20,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("up.dcm: "), "{e}");
}
