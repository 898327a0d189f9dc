//! Seeded augmentation (reproducible, independent of threads), flips with left/right swapping, the
//! `data check` report, and the phantom dataset end to end.

mod common;

use common::*;
use tgcnet_data::check::CheckOptions;
use tgcnet_data::{
    AugmentConfig, Dataset, Format, LoaderConfig, PhantomConfig, Severity, check, generate_phantom,
    loader,
};

fn aug_cfg(seed: u64, workers: usize) -> LoaderConfig {
    LoaderConfig {
        image_size: 16,
        batch_size: 3,
        shuffle: true,
        augment: true,
        seed,
        workers,
        ..Default::default()
    }
}

#[test]
fn augmentation_is_deterministic_and_thread_independent() {
    let d = tempfile::tempdir().unwrap();
    manifest_dataset(d.path(), 7);
    let samples = Dataset::open(d.path(), None)
        .unwrap()
        .split("train")
        .unwrap()
        .to_vec();
    let run = |c: &LoaderConfig| -> Vec<_> { loader(&samples, c).map(|b| b.unwrap()).collect() };
    let a = run(&aug_cfg(5, 1));
    let b = run(&aug_cfg(5, 3));
    assert_eq!(a, b);
    let c = run(&aug_cfg(6, 2));
    assert_ne!(a[0].images, c[0].images);
    // Another epoch: another order and other draws.
    let e1 = run(&LoaderConfig {
        epoch: 1,
        ..aug_cfg(5, 2)
    });
    assert_ne!(
        a.iter().flat_map(|b| b.indices.clone()).collect::<Vec<_>>(),
        e1.iter()
            .flat_map(|b| b.indices.clone())
            .collect::<Vec<_>>()
    );
    // Every sample is visited once per epoch.
    let mut idx: Vec<usize> = a.iter().flat_map(|b| b.indices.clone()).collect();
    idx.sort();
    assert_eq!(idx, (0..7).collect::<Vec<_>>());
    // Augmented masks stay binary.
    assert!(
        a.iter()
            .all(|b| b.masks.iter().all(|&v| v == 0.0 || v == 1.0))
    );
    // Without augmentation a sample is the same in both modes of access.
    let plain = LoaderConfig {
        augment: false,
        shuffle: false,
        ..aug_cfg(5, 2)
    };
    let first = loader(&samples, &plain).next().unwrap().unwrap();
    let single = tgcnet_data::load_sample(&samples[0], 16, &plain.sample_options()).unwrap();
    assert_eq!(&first.images[..3 * 256], &single.image[..]);
}

#[test]
fn flip_swaps_left_and_right_in_the_caption() {
    let d = tempfile::tempdir().unwrap();
    manifest_dataset(d.path(), 2);
    let samples = Dataset::open(d.path(), None)
        .unwrap()
        .split("train")
        .unwrap()
        .to_vec();
    let c = LoaderConfig {
        augment: true,
        shuffle: false,
        augment_config: AugmentConfig {
            rotate_deg: 0.0,
            scale_min: 1.0,
            scale_max: 1.0,
            translate: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            hflip_prob: 1.0,
        },
        ..aug_cfg(1, 1)
    };
    let b = loader(&samples, &c).next().unwrap().unwrap();
    assert!(b.flipped.iter().all(|&f| f));
    assert_eq!(
        b.captions[0],
        "Bilateral pulmonary infection, two infected areas, upper right lung and lower left lung."
    );
    // Mask rectangle [4, 8) mirrored to [8, 12) on a 16-wide image.
    let m = &b.masks[..256];
    assert_eq!(m[5 * 16 + 9], 1.0);
    assert_eq!(m[5 * 16 + 5], 0.0);
}

#[test]
fn check_reports_problems() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    manifest_dataset(r, 4);
    // Missing mask, wrong-size mask, non-binary mask, empty mask, empty caption, case-only names,
    // patient overlap between splits, a duplicate entry.
    std::fs::remove_file(r.join("mask/s0.png")).unwrap();
    mask_png(&r.join("mask/s1.png"), 10, 16, (0, 0, 3, 3), 255);
    mask_png(&r.join("mask/s2.png"), 16, 16, (0, 0, 3, 3), 77);
    mask_png(&r.join("mask/s3.png"), 16, 16, (0, 0, 0, 0), 255);
    gray_png(&r.join("img/S3.png"), 16, 16, 0);
    gray_png(&r.join("img/sub-s77_a.png"), 16, 16, 0);
    gray_png(&r.join("img/sub-s77_b.png"), 16, 16, 0);
    write(
        &r.join("train.csv"),
        format!(
            "image,mask,text\nimg/s0.png,mask/s0.png,\"{CAP}\"\nimg/s1.png,mask/s1.png,\"{CAP}\"\n\
             img/s2.png,mask/s2.png,\"{CAP}\"\nimg/s3.png,mask/s3.png,\" \"\nimg/sub-s77_a.png,,x\nimg/s2.png,mask/s2.png,\"{CAP}\"\n"
        ),
    );
    write(
        &r.join("val.csv"),
        "image,mask,text\nimg/sub-s77_b.png,,\"one infected areas..\"\n",
    );
    let report = check(r, None, &CheckOptions::default()).unwrap();
    let kinds = |sev: Severity| -> Vec<String> {
        report
            .issues
            .iter()
            .filter(|i| i.severity == sev)
            .map(|i| i.kind.as_str().to_string())
            .collect()
    };
    let errors = kinds(Severity::Error);
    let warnings = kinds(Severity::Warning);
    for k in ["missing_file", "size_mismatch", "empty_caption"] {
        assert!(errors.contains(&k.to_string()), "{k} not in {errors:?}");
    }
    for k in [
        "non_binary_mask",
        "empty_mask",
        "case_only_difference",
        "patient_overlap",
        "duplicate_entry",
    ] {
        assert!(warnings.contains(&k.to_string()), "{k} not in {warnings:?}");
    }
    assert!(report.has_errors());
    // s2 is listed twice: 2 × 9 pixels of value 77.
    assert_eq!(report.non_binary_mask_values.get(&77), Some(&18));
    let text = report.to_string();
    assert!(
        text.contains("size_mismatch") && text.contains("mask/s1.png"),
        "{text}"
    );
    assert!(text.contains("sub-s77"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["format"], "manifest");
    // " " (trimmed to empty) and "one infected areas..".
    assert_eq!(report.vocabulary.changed_by_normalization, 2);
}

#[test]
fn check_text_only_spreadsheets() {
    let report = check(
        &fixtures().join("lvit_text_only"),
        None,
        &CheckOptions::default(),
    )
    .unwrap();
    assert_eq!(report.format, Format::Lvit);
    assert!(report.has_errors());
    let folders: Vec<_> = report
        .issues
        .iter()
        .filter(|i| i.kind == "missing_folder")
        .collect();
    assert_eq!(folders.len(), 4, "{:?}", report.issues); // img and labelcol for Train and Test
    assert!(report.issues.iter().any(|i| i.kind == "empty_caption"));
    assert!(
        report
            .issues
            .iter()
            .any(|i| i.kind == "laterality_contradiction")
    );
    assert!(!report.issues.iter().any(|i| i.kind == "missing_file"));
    assert_eq!(report.vocabulary.captions, 4);
    assert_eq!(report.vocabulary.no_infection, 1);
    assert_eq!(report.vocabulary.changed_by_normalization, 2);
    let text = report.to_string();
    assert!(
        text.contains("missing_folder") && text.contains("Train_Folder"),
        "{text}"
    );
    assert!(text.contains("top words"));
}

#[test]
fn check_clean_dataset_has_no_errors() {
    let d = tempfile::tempdir().unwrap();
    manifest_dataset(d.path(), 3);
    let report = check(d.path(), None, &CheckOptions::default()).unwrap();
    assert!(!report.has_errors(), "{report}");
    assert_eq!(report.splits[0].images_decoded, 3);
    assert_eq!(report.splits[0].image_sizes.get("16x16"), Some(&3));
}

#[test]
fn phantom_dataset_roundtrip() {
    let d = tempfile::tempdir().unwrap();
    let cfg = PhantomConfig {
        n_train: 6,
        n_val: 2,
        size: 64,
        seed: 3,
        text_necessary: true,
        ribs: true,
        ..PhantomConfig::default()
    };
    generate_phantom(d.path(), &cfg).unwrap();
    let ds = Dataset::open(d.path(), None).unwrap();
    assert_eq!(ds.format, Format::Manifest);
    assert_eq!(ds.split("train").unwrap().len(), 6);
    assert_eq!(ds.split("val").unwrap().len(), 2);
    let report = check(d.path(), None, &CheckOptions::default()).unwrap();
    assert!(!report.has_errors(), "{report}");
    // Captions parse back to the zones in the mask, and the files are deterministic.
    let d2 = tempfile::tempdir().unwrap();
    generate_phantom(d2.path(), &cfg).unwrap();
    for f in [
        "train.csv",
        "val.csv",
        "images/phantom_00003.png",
        "masks/phantom_00007.png",
    ] {
        assert_eq!(
            std::fs::read(d.path().join(f)).unwrap(),
            std::fs::read(d2.path().join(f)).unwrap(),
            "{f}"
        );
    }
    let b = loader(
        ds.split("train").unwrap(),
        &LoaderConfig {
            image_size: 32,
            batch_size: 4,
            ..Default::default()
        },
    )
    .next()
    .unwrap()
    .unwrap();
    assert_eq!(b.images.len(), 4 * 3 * 32 * 32);
}

/// Left and right end to end, from the renderer through the manifest, the loader (with and without a
/// flip) to the batch the model reads: in the image convention a "left"-only caption's mask lies in
/// the image's left half, in the patient convention in its right half, and a flip moves the mask and
/// rewrites the caption together. A swap anywhere on that path fails here.
#[test]
fn sides_agree_from_phantom_to_batch_in_both_conventions() {
    use tgcnet_data::{CaptionMeta, SideConvention};
    for laterality in SideConvention::ALL {
        let d = tempfile::tempdir().unwrap();
        let cfg = PhantomConfig {
            n_train: 40,
            n_val: 4,
            size: 32,
            seed: 5,
            laterality,
            ..PhantomConfig::default()
        };
        generate_phantom(d.path(), &cfg).unwrap();
        let samples = Dataset::open(d.path(), None)
            .unwrap()
            .split("train")
            .unwrap()
            .to_vec();
        for hflip in [false, true] {
            let c = LoaderConfig {
                image_size: 32,
                batch_size: 40,
                shuffle: false,
                augment: hflip,
                augment_config: AugmentConfig {
                    rotate_deg: 0.0,
                    scale_min: 1.0,
                    scale_max: 1.0,
                    translate: 0.0,
                    brightness: 0.0,
                    contrast: 0.0,
                    hflip_prob: 1.0,
                },
                ..LoaderConfig::default()
            };
            let b = loader(&samples, &c).next().unwrap().unwrap();
            let mut one_sided = 0;
            for i in 0..b.batch {
                let Some(z) = CaptionMeta::parse(&b.captions[i]).zones else {
                    continue;
                };
                let (left, right) = (z[..3].contains(&true), z[3..].contains(&true));
                if left == right {
                    continue;
                }
                one_sided += 1;
                let m = &b.masks[i * 1024..(i + 1) * 1024];
                let (mut on_left, mut on_right) = (0, 0);
                for (p, &v) in m.iter().enumerate() {
                    if v > 0.5 {
                        if p % 32 < 16 {
                            on_left += 1
                        } else {
                            on_right += 1
                        }
                    }
                }
                let named_image_left = left == (laterality == SideConvention::Image);
                let caption = &b.captions[i];
                if named_image_left {
                    assert!(
                        on_left > 0 && on_right == 0,
                        "{laterality} flip={hflip}: {caption}"
                    );
                } else {
                    assert!(
                        on_right > 0 && on_left == 0,
                        "{laterality} flip={hflip}: {caption}"
                    );
                }
            }
            assert!(one_sided >= 5, "{one_sided} one-sided captions");
        }
        // `data check` reads the convention back from the masks, and warns when told the other one.
        let other = match laterality {
            SideConvention::Image => SideConvention::Patient,
            SideConvention::Patient => SideConvention::Image,
        };
        let opts = CheckOptions {
            expected_laterality: Some(other),
            ..CheckOptions::default()
        };
        let report = check(d.path(), None, &opts).unwrap();
        assert_eq!(report.laterality, Some(laterality), "{report}");
        assert!(
            report
                .issues
                .iter()
                .any(|i| i.kind == "laterality_convention"),
            "{report}"
        );
        let agreed = CheckOptions {
            expected_laterality: Some(laterality),
            ..CheckOptions::default()
        };
        let report = check(d.path(), None, &agreed).unwrap();
        assert!(
            !report
                .issues
                .iter()
                .any(|i| i.kind == "laterality_convention")
        );
    }
}
