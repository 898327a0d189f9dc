//! The published dataset trees, read as their own code reads them (fixtures made by
//! scripts/fixtures/make_data_fixtures.py):
//! - `lvit_qata`: LViT's QaTa-COV19 tree, `{Train,Val,Test}_Folder/{img,labelcol,Split_text.xlsx}`,
//!   `Image` naming the `mask_` file (LViT's Config.py, train_model.py and Load_Dataset.py);
//! - `lvit_mosmedplus`: LViT's MosMedData+ tree, image and mask of the same name, with the first rows
//!   of the real spreadsheets (noisy captions as published);
//! - `guidedecoder`: LanGuideMedSeg's `prompt/{train,test}.csv`, `Train/{Images,GTs}`,
//!   `Test/{Images,GTs}`, train.csv split 80/20 by row order.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tgcnet_data::dataset::{detect, guidedecoder_train_rows};
use tgcnet_data::{
    CheckOptions, Dataset, Format, LoaderConfig, Sample, SampleOptions, check, check_dataset,
    load_sample, loader,
};

/// Copies a directory tree (fixtures are modified in temporary copies only).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join(name);
    copy_dir(&fixtures().join(name), &root);
    (d, root)
}

/// The split's ids in order.
fn ids(ds: &Dataset, split: &str) -> Vec<String> {
    ds.split(split)
        .unwrap()
        .iter()
        .map(|s| s.id.clone())
        .collect()
}

/// Every image and mask of every split exists, every caption is non-empty, and `check` finds no error.
fn assert_complete_and_clean(ds: &Dataset) {
    for (split, samples) in &ds.splits {
        for s in samples {
            assert!(s.image_path.is_file(), "{split}: {:?}", s.image_path);
            let m = s.mask_path.as_ref().unwrap();
            assert!(m.is_file(), "{split}: {m:?}");
            assert!(!s.caption.trim().is_empty(), "{split}: {}", s.id);
        }
    }
    let report = check_dataset(ds, &CheckOptions::default()).unwrap();
    assert_eq!(report.errors, 0, "{report}");
    let decoded: usize = report.splits.iter().map(|s| s.images_decoded).sum();
    assert_eq!(decoded, ds.len(), "{report}");
}

/// The first batch of a split through the training loader: every sample decoded, with its mask.
fn first_batch(samples: &[Sample]) -> tgcnet_data::Batch {
    let cfg = LoaderConfig {
        image_size: 16,
        batch_size: samples.len(),
        shuffle: false,
        workers: 1,
        require_masks: true,
        ..LoaderConfig::default()
    };
    let batch = loader(samples, &cfg).next().unwrap().unwrap();
    assert_eq!(batch.ids.len(), samples.len());
    assert!(batch.has_mask.iter().all(|&m| m));
    assert_eq!(batch.masks.len(), samples.len() * 16 * 16);
    for k in 0..samples.len() {
        let mask = &batch.masks[k * 256..(k + 1) * 256];
        assert!(mask.contains(&1.0), "{}: empty mask", batch.ids[k]);
        assert!(mask.iter().all(|&v| v == 0.0 || v == 1.0));
    }
    batch
}

#[test]
fn lvit_qata_tree_with_spreadsheets_inside_the_split_folders() {
    let root = fixtures().join("lvit_qata");
    assert_eq!(detect(&root).unwrap(), Some(Format::Lvit));
    let ds = Dataset::open(&root, None).unwrap();
    assert_eq!(ds.format, Format::Lvit);
    assert_eq!(ds.root, root);
    assert_eq!(
        ds.splits.keys().collect::<Vec<_>>(),
        vec!["test", "train", "val"]
    );
    assert_eq!(
        ids(&ds, "train"),
        vec![
            "covid_1",
            "covid_2",
            "sub-s08046_ses-e17352_run-2_bp-chest_vp-ap_dx"
        ]
    );
    assert_eq!(ids(&ds, "val"), vec!["covid_7", "covid_8"]);
    assert_eq!(ids(&ds, "test"), vec!["covid_11", "covid_12"]);
    for (split, folder) in [
        ("train", "Train_Folder"),
        ("val", "Val_Folder"),
        ("test", "Test_Folder"),
    ] {
        for s in ds.split(split).unwrap() {
            // `Image` = mask_NAME.png: image img/NAME.png, mask labelcol/mask_NAME.png.
            assert!(
                s.image_path.ends_with(format!("{folder}/img/{}.png", s.id)),
                "{:?}",
                s.image_path
            );
            assert!(
                s.mask_path
                    .as_ref()
                    .unwrap()
                    .ends_with(format!("{folder}/labelcol/mask_{}.png", s.id)),
                "{:?}",
                s.mask_path
            );
            let sheet = format!("{folder}/{}_text.xlsx", &folder[..folder.len() - 7]);
            assert!(s.source.file.ends_with(&sheet), "{:?}", s.source.file);
        }
    }
    let t = &ds.split("train").unwrap()[1];
    assert_eq!(
        t.caption,
        "Unilateral pulmonary infection, one infected area, lower right lung."
    );
    assert_eq!(t.source.location, "row 3");
    assert_complete_and_clean(&ds);
}

#[test]
fn lvit_mosmedplus_tree_with_the_real_first_rows() {
    let root = fixtures().join("lvit_mosmedplus");
    assert_eq!(detect(&root).unwrap(), Some(Format::Lvit));
    let ds = Dataset::open(&root, None).unwrap();
    assert_eq!(ds.format, Format::Lvit);
    assert_eq!(
        ids(&ds, "train"),
        vec!["bjorke_1", "bjorke_10", "bjorke_100"]
    );
    assert_eq!(
        ids(&ds, "val"),
        vec!["bjorke_90", "bjorke_91", "bjorke_92", "bjorke_93"]
    );
    assert_eq!(
        ids(&ds, "test"),
        vec!["bjorke_81", "bjorke_82", "bjorke_83"]
    );
    for (split, folder) in [
        ("train", "Train_Folder"),
        ("val", "Val_Folder"),
        ("test", "Test_Folder"),
    ] {
        for s in ds.split(split).unwrap() {
            // Image and mask share the name in `Image` (LViT's MoNuSeg branch).
            assert!(s.image_path.ends_with(format!("{folder}/img/{}.png", s.id)));
            assert!(
                s.mask_path
                    .as_ref()
                    .unwrap()
                    .ends_with(format!("{folder}/labelcol/{}.png", s.id))
            );
        }
    }
    // The published captions, noise included, and their normalised form for the model.
    let train = ds.split("train").unwrap();
    assert_eq!(
        train[0].caption,
        "Bilateral pulmonary infection, two infected areas, all left lung and middle right lung."
    );
    let val = ds.split("val").unwrap();
    assert_eq!(
        val[0].caption,
        "Unilateral pulmonary infection, one infected areas, middle left lung."
    );
    let test = ds.split("test").unwrap();
    assert!(
        test[0].caption.ends_with("right lung.."),
        "{}",
        test[0].caption
    );
    let l = load_sample(&val[0], 16, &SampleOptions::default()).unwrap();
    assert_eq!(
        l.caption,
        "Unilateral pulmonary infection, one infected area, middle left lung."
    );
    assert!(
        !load_sample(&test[0], 16, &SampleOptions::default())
            .unwrap()
            .caption
            .ends_with("..")
    );
    assert_complete_and_clean(&ds);
}

#[test]
fn guidedecoder_tree_with_train_and_test_folders() {
    let root = fixtures().join("guidedecoder");
    assert_eq!(detect(&root).unwrap(), Some(Format::GuideDecoder));
    let ds = Dataset::open(&root, None).unwrap();
    assert_eq!(ds.format, Format::GuideDecoder);
    // train.csv has 5 rows and there is no val CSV: rows 1-4 train, row 5 val (LanGuideMedSeg).
    assert_eq!(
        ids(&ds, "train"),
        vec!["covid_1", "covid_2", "covid_3", "covid_4"]
    );
    assert_eq!(ids(&ds, "val"), vec!["covid_5"]);
    assert_eq!(ids(&ds, "test"), vec!["covid_21", "covid_22"]);
    let v = &ds.split("val").unwrap()[0];
    assert!(v.image_path.ends_with("Train/Images/covid_5.png"));
    assert!(
        v.mask_path
            .as_ref()
            .unwrap()
            .ends_with("Train/GTs/mask_covid_5.png")
    );
    assert!(v.source.file.ends_with("prompt/train.csv"));
    assert_eq!(v.source.location, "row 6");
    assert_eq!(
        v.caption,
        "Unilateral pulmonary infection, one infected area, middle left lung."
    );
    let t = &ds.split("test").unwrap()[1];
    assert!(t.image_path.ends_with("Test/Images/covid_22.png"));
    assert!(
        t.mask_path
            .as_ref()
            .unwrap()
            .ends_with("Test/GTs/mask_covid_22.png")
    );
    assert_complete_and_clean(&ds);
}

#[test]
fn guidedecoder_80_20_split_by_row_order() {
    // Python's int(0.8 * n) for n = 0..=10.
    let expected = [0, 0, 1, 2, 3, 4, 4, 5, 6, 7, 8];
    for (n, &want) in expected.iter().enumerate() {
        assert_eq!(guidedecoder_train_rows(n), want, "n = {n}");
    }
    assert_eq!(guidedecoder_train_rows(5716), 4572);
    // With a validation CSV of its own, train.csv is not split.
    let (_d, root) = copy_fixture("guidedecoder");
    write(
        &root.join("prompt/valid.csv"),
        "Image,Description\nmask_covid_5.png,\"Unilateral pulmonary infection, one infected area, middle left lung.\"\n",
    );
    let ds = Dataset::open(&root, None).unwrap();
    assert_eq!(ds.split("train").unwrap().len(), 5);
    let v = &ds.split("val").unwrap()[0];
    assert!(v.source.file.ends_with("prompt/valid.csv"));
    // No `Val/` folder: the validation images are the training images, as in LanGuideMedSeg.
    assert!(v.image_path.ends_with("Train/Images/covid_5.png"));
    assert!(v.image_path.is_file());
}

#[test]
fn guidedecoder_folder_variants() {
    // Lower-case folder names.
    let (_d, root) = copy_fixture("guidedecoder");
    for (from, to) in [
        ("Train/Images", "Train/images"),
        ("Train/GTs", "Train/gts"),
        ("Train", "train"),
        ("Test", "test"),
    ] {
        std::fs::rename(root.join(from), root.join(to)).unwrap();
    }
    let ds = Dataset::open(&root, None).unwrap();
    assert!(
        ds.split("train").unwrap()[0]
            .image_path
            .ends_with("train/images/covid_1.png")
    );
    assert_complete_and_clean(&ds);
    // "Train Set" / "Test Set".
    let (_d2, root) = copy_fixture("guidedecoder");
    std::fs::rename(root.join("Train"), root.join("Train Set")).unwrap();
    std::fs::rename(root.join("Test"), root.join("Test Set")).unwrap();
    let ds = Dataset::open(&root, None).unwrap();
    assert!(
        ds.split("test").unwrap()[0]
            .image_path
            .ends_with("Test Set/Images/covid_21.png")
    );
    assert_complete_and_clean(&ds);
}

#[test]
fn lvit_spreadsheet_inside_the_folder_beats_the_one_beside_it() {
    let (_d, root) = copy_fixture("lvit_qata");
    // Beside the folders: another Train_text.xlsx (naming other files), and Test's spreadsheet moved
    // out of its folder.
    std::fs::copy(
        fixtures().join("lvit/Train_text.xlsx"),
        root.join("Train_text.xlsx"),
    )
    .unwrap();
    std::fs::rename(
        root.join("Test_Folder/Test_text.xlsx"),
        root.join("Test_text.xlsx"),
    )
    .unwrap();
    assert_eq!(detect(&root).unwrap(), Some(Format::Lvit));
    let ds = Dataset::open(&root, None).unwrap();
    // Train: the spreadsheet inside Train_Folder, as LViT reads it; the one beside is not read.
    assert_eq!(ds.split("train").unwrap().len(), 3);
    assert_eq!(ds.split("train").unwrap()[0].id, "covid_1");
    for s in ds.split("train").unwrap() {
        assert!(s.source.file.ends_with("Train_Folder/Train_text.xlsx"));
    }
    // Test: only beside, still read, with its images in Test_Folder.
    let test = ds.split("test").unwrap();
    assert_eq!(test.len(), 2);
    assert_eq!(test[0].source.file, root.join("Test_text.xlsx"));
    assert!(test[0].image_path.ends_with("Test_Folder/img/covid_11.png"));
    assert_complete_and_clean(&ds);
}

#[test]
fn lvit_spreadsheet_or_split_folder_given_directly() {
    let root = fixtures().join("lvit_qata");
    // The spreadsheet inside its folder: the dataset root is the folder's parent.
    let ds = Dataset::open(&root.join("Val_Folder/Val_text.xlsx"), None).unwrap();
    assert_eq!(ds.format, Format::Lvit);
    assert_eq!(ds.root, root);
    assert_eq!(ds.splits.len(), 1);
    assert_eq!(ids(&ds, "val"), vec!["covid_7", "covid_8"]);
    assert_complete_and_clean(&ds);
    // The split folder itself.
    let folder = root.join("Train_Folder");
    assert_eq!(detect(&folder).unwrap(), Some(Format::Lvit));
    let ds = Dataset::open(&folder, None).unwrap();
    assert_eq!(ds.split("train").unwrap().len(), 3);
    assert_complete_and_clean(&ds);
}

#[test]
fn older_variants_still_read() {
    // Spreadsheets beside the split folders.
    let ds = Dataset::open(&fixtures().join("lvit"), None).unwrap();
    assert_eq!(ds.format, Format::Lvit);
    assert_eq!(ds.split("train").unwrap().len(), 3);
    assert_eq!(ds.split("val").unwrap().len(), 1);
    assert_complete_and_clean(&ds);
    // Spreadsheets only.
    let report = check(
        &fixtures().join("lvit_text_only"),
        None,
        &CheckOptions::default(),
    )
    .unwrap();
    assert_eq!(report.format, Format::Lvit);
}

#[test]
fn lvit_image_with_another_extension_found_by_its_stem() {
    // LViT's MoNuSeg: img/NAME.tif, labelcol/NAME.png, the sheet naming NAME.png.
    let (_d, root) = copy_fixture("lvit_mosmedplus");
    let img = root.join("Train_Folder/img");
    std::fs::rename(img.join("bjorke_1.png"), img.join("bjorke_1.tif")).unwrap();
    let ds = Dataset::open(&root, None).unwrap();
    let s = &ds.split("train").unwrap()[0];
    assert_eq!(s.image_path, img.join("bjorke_1.tif"));
    assert!(
        s.mask_path
            .as_ref()
            .unwrap()
            .ends_with("Train_Folder/labelcol/bjorke_1.png")
    );
}

#[test]
fn training_loader_reads_each_published_tree() {
    for (name, split, n) in [
        ("lvit_qata", "train", 3),
        ("lvit_qata", "test", 2),
        ("lvit_mosmedplus", "val", 4),
        ("guidedecoder", "train", 4),
        ("guidedecoder", "val", 1),
    ] {
        let ds = Dataset::open(&fixtures().join(name), None).unwrap();
        let samples = ds.split(split).unwrap();
        assert_eq!(samples.len(), n, "{name} {split}");
        let batch = first_batch(samples);
        assert_eq!(
            batch.ids,
            samples.iter().map(|s| s.id.clone()).collect::<Vec<_>>()
        );
        // Captions normalised for the model ("one infected areas" → "one infected area").
        for c in &batch.captions {
            assert!(!c.contains("one infected areas"), "{c}");
            assert!(!c.ends_with(".."), "{c}");
        }
        for (c, s) in batch.captions.iter().zip(samples) {
            assert_eq!(c, &s.text(true));
        }
    }
}

/// An error as anyhow's `{:#}` prints it: the message, then each source's.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(&format!(": {c}"));
        src = c.source();
    }
    s
}

#[test]
fn missing_file_error_names_the_file_once() {
    let (_d, root) = copy_fixture("lvit_qata");
    let img = root.join("Train_Folder/img/covid_1.png");
    std::fs::remove_file(&img).unwrap();
    let os = std::fs::read(&img).unwrap_err().to_string();
    let ds = Dataset::open(&root, None).unwrap();
    let s = &ds.split("train").unwrap()[0];
    let e = load_sample(s, 16, &SampleOptions::default()).unwrap_err();
    let path = img.display().to_string();
    for text in [e.to_string(), chain(&e), format!("{e}")] {
        assert_eq!(text.matches(&path).count(), 1, "{text}");
        assert_eq!(text.matches(&os).count(), 1, "{text}");
    }
    assert_eq!(e.to_string(), format!("{path}: {os}"));
    assert_eq!(e.path(), Some(img.as_path()));
    // Through the loader (training) too.
    let cfg = LoaderConfig {
        image_size: 16,
        batch_size: 3,
        shuffle: false,
        workers: 1,
        ..LoaderConfig::default()
    };
    let e = loader(ds.split("train").unwrap(), &cfg)
        .next()
        .unwrap()
        .unwrap_err();
    let text = chain(&e);
    assert_eq!(text.matches(&path).count(), 1, "{text}");
    assert_eq!(text.matches(&os).count(), 1, "{text}");
    // A missing dataset directory.
    let nope = root.join("nope");
    let e = Dataset::open(&nope, None).unwrap_err();
    let text = chain(&e);
    assert_eq!(
        text.matches(&nope.display().to_string()).count(),
        1,
        "{text}"
    );
}

#[test]
fn check_report_names_an_unreadable_file_once() {
    let (_d, root) = copy_fixture("guidedecoder");
    let img = root.join("Test/Images/covid_21.png");
    write(&img, b"\x89PNG\r\n\x1a\nnot a png");
    let report = check(&root, None, &CheckOptions::default()).unwrap();
    let issue = report
        .issues
        .iter()
        .find(|i| i.kind == "unreadable")
        .unwrap();
    assert_eq!(issue.file.as_deref(), Some(img.as_path()));
    assert!(
        !issue.message.contains(&img.display().to_string()),
        "{}",
        issue.message
    );
    assert!(issue.message.contains("cannot decode"), "{}", issue.message);
    let text = report.to_string();
    let line = text.lines().find(|l| l.contains("covid_21.png")).unwrap();
    assert_eq!(line.matches("covid_21.png").count(), 1, "{line}");
}
