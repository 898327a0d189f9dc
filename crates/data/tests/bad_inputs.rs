//! Bad inputs: every one gives a clear error naming the file and the problem, never a panic; the
//! loader's skip and fail policies.

mod common;

use common::*;
use tgcnet_data::{BadSamplePolicy, Dataset, LoaderConfig, SampleOptions, load_sample, loader};

fn open_train(dir: &std::path::Path) -> Vec<tgcnet_data::Sample> {
    Dataset::open(dir, None)
        .unwrap()
        .split("train")
        .unwrap()
        .to_vec()
}

#[test]
fn corrupt_png() {
    let d = tempfile::tempdir().unwrap();
    manifest_dataset(d.path(), 1);
    write(
        &d.path().join("img/s0.png"),
        b"\x89PNG\r\n\x1a\nthis is not a png at all",
    );
    let e = load_sample(&open_train(d.path())[0], 8, &SampleOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("img/s0.png") && e.contains("cannot decode"),
        "{e}"
    );
}

#[test]
fn truncated_png() {
    let d = tempfile::tempdir().unwrap();
    manifest_dataset(d.path(), 1);
    let p = d.path().join("img/s0.png");
    let bytes = std::fs::read(&p).unwrap();
    write(&p, &bytes[..bytes.len() / 2]);
    let e = load_sample(&open_train(d.path())[0], 8, &SampleOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("img/s0.png") && e.contains("cannot decode"),
        "{e}"
    );
}

#[test]
fn truncated_nifti_and_dicom() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let vox: Vec<i16> = vec![1; 4 * 4 * 2];
    tgcnet_data::nifti::write_volume(&r.join("v.nii"), [4, 4, 2], &vox, 4, 1.0, 0.0).unwrap();
    let b = std::fs::read(r.join("v.nii")).unwrap();
    write(&r.join("v.nii"), &b[..b.len() - 7]);
    let e = tgcnet_data::nifti::read_volume(&r.join("v.nii"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("v.nii") && e.contains("truncated"), "{e}");
    tgcnet_data::nifti::write_volume(&r.join("g.nii.gz"), [4, 4, 2], &vox, 4, 1.0, 0.0).unwrap();
    let b = std::fs::read(r.join("g.nii.gz")).unwrap();
    write(&r.join("g.nii.gz"), &b[..b.len() / 2]);
    let e = tgcnet_data::nifti::read_volume(&r.join("g.nii.gz"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("g.nii.gz"), "{e}");
    write(&r.join("x.nii"), vec![0u8; 400]);
    let e = tgcnet_data::nifti::read_volume(&r.join("x.nii"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.nii") && e.contains("not a NIfTI-1"), "{e}");
}

#[test]
fn missing_mask() {
    let d = tempfile::tempdir().unwrap();
    manifest_dataset(d.path(), 1);
    std::fs::remove_file(d.path().join("mask/s0.png")).unwrap();
    let e = load_sample(&open_train(d.path())[0], 8, &SampleOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("mask/s0.png"), "{e}");
}

#[test]
fn mask_of_another_size() {
    let d = tempfile::tempdir().unwrap();
    manifest_dataset(d.path(), 1);
    mask_png(&d.path().join("mask/s0.png"), 12, 16, (0, 0, 2, 2), 255);
    let e = load_sample(&open_train(d.path())[0], 8, &SampleOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mask/s0.png") && e.contains("(12, 16)") && e.contains("img/s0.png"),
        "{e}"
    );
}

#[test]
fn caption_not_utf8_names_file_and_row() {
    let d = tempfile::tempdir().unwrap();
    manifest_dataset(d.path(), 2);
    let mut csv =
        b"image,mask,text\nimg/s0.png,mask/s0.png,fine\nimg/s1.png,mask/s1.png,\"caf".to_vec();
    csv.extend_from_slice(b"\xe9 lung\"\n"); // Latin-1 e-acute
    write(&d.path().join("train.csv"), csv);
    let e = Dataset::open(d.path(), None).unwrap_err().to_string();
    assert!(
        e.contains("train.csv")
            && e.contains("row 3")
            && e.contains("`text`")
            && e.contains("UTF-8"),
        "{e}"
    );
}

#[test]
fn manifest_missing_text_column() {
    let d = tempfile::tempdir().unwrap();
    write(&d.path().join("m.csv"), "image,mask\na.png,b.png\n");
    let e = Dataset::open(d.path(), None).unwrap_err().to_string();
    assert!(
        e.contains("m.csv") && e.contains("missing column `text`"),
        "{e}"
    );
}

fn cfg(policy: BadSamplePolicy) -> LoaderConfig {
    LoaderConfig {
        image_size: 8,
        batch_size: 2,
        shuffle: false,
        workers: 2,
        on_bad_sample: policy,
        ..Default::default()
    }
}

#[test]
fn loader_skip_reports_and_keeps_loading() {
    let d = tempfile::tempdir().unwrap();
    manifest_dataset(d.path(), 5);
    write(&d.path().join("img/s1.png"), b"garbage");
    let samples = open_train(d.path());
    let mut l = loader(&samples, &cfg(BadSamplePolicy::Skip));
    let batches: Vec<_> = l.by_ref().map(|b| b.unwrap()).collect();
    // 4 good samples, batches refilled from the next samples: [0, 2], [3, 4].
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].indices, vec![0, 2]);
    assert_eq!(batches[1].indices, vec![3, 4]);
    assert_eq!(batches[0].images.len(), 2 * 3 * 64);
    assert_eq!(batches[0].masks.len(), 2 * 64);
    let bad = l.bad_samples();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].id, "s1");
    assert!(bad[0].error.contains("img/s1.png"), "{}", bad[0].error);
    assert!(bad[0].path.as_ref().unwrap().ends_with("img/s1.png"));
}

#[test]
fn loader_fail_yields_error_naming_file() {
    let d = tempfile::tempdir().unwrap();
    manifest_dataset(d.path(), 5);
    write(&d.path().join("img/s3.png"), b"garbage");
    let samples = open_train(d.path());
    let out: Vec<_> = loader(&samples, &cfg(BadSamplePolicy::Fail)).collect();
    assert_eq!(out.len(), 2);
    assert!(out[0].is_ok());
    let e = out[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("img/s3.png"), "{e}");
    assert_eq!(
        "skip".parse::<BadSamplePolicy>().unwrap(),
        BadSamplePolicy::Skip
    );
    assert!("maybe".parse::<BadSamplePolicy>().is_err());
}

#[test]
fn loader_drop_last_and_early_drop() {
    let d = tempfile::tempdir().unwrap();
    manifest_dataset(d.path(), 5);
    let samples = open_train(d.path());
    let c = LoaderConfig {
        drop_last: true,
        ..cfg(BadSamplePolicy::Fail)
    };
    let l = loader(&samples, &c);
    assert_eq!(l.expected_batches(), 2);
    assert_eq!(l.count(), 2);
    let c = LoaderConfig {
        drop_last: false,
        prefetch: 1,
        ..cfg(BadSamplePolicy::Fail)
    };
    let mut l = loader(&samples, &c);
    assert_eq!(l.next().unwrap().unwrap().batch, 2);
    drop(l); // must not hang
    let sizes: Vec<usize> = loader(&samples, &c).map(|b| b.unwrap().batch).collect();
    assert_eq!(sizes, vec![2, 2, 1]);
}
