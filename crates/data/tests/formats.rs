//! One test per dataset layout and per medical image format, on tiny fixtures.

mod common;

use common::*;
use tgcnet_data::dicom::{DicomWriteOptions, write_dicom};
use tgcnet_data::nifti::write_volume;
use tgcnet_data::transform::to_clip;
use tgcnet_data::{
    Dataset, DecodeOptions, Format, Laterality, Plane, SampleOptions, Window, load_sample,
};

fn opts() -> SampleOptions {
    SampleOptions::default()
}

#[test]
fn sgseg_json_layout() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    for (split, name) in [
        ("train", "covid_1"),
        ("train", "sub-s1_x"),
        ("valid", "covid_2"),
    ] {
        gray_png(
            &r.join(format!("images/{split}/images/{name}.png")),
            20,
            12,
            1,
        );
        mask_png(
            &r.join(format!("images/{split}/masks/mask_{name}.png")),
            20,
            12,
            (2, 2, 6, 6),
            255,
        );
    }
    let json = r#"{"train": [
        {"image_path": "mask_covid_1.png", "caption": "bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.", "pulmonary_infection": 2, "infected_area": 2, "pseudo_label": [1,0,0,0,0,1]},
        {"image_path": "mask_sub-s1_x.png", "caption": "unilateral pulmonary infection, one infected area, lower right lung.", "pulmonary_infection": 1, "infected_area": 1, "pseudo_label": [0,0,0,0,0,1]}],
      "valid": [{"image_path": "mask_covid_2.png", "caption": "unilateral pulmonary infection, one infected area, upper left lung.", "pulmonary_infection": 1, "infected_area": 1, "pseudo_label": [1,0,0,0,0,0]}]}"#;
    write(&r.join("prompts/annotation.json"), json);
    let ds = Dataset::open(r, None).unwrap();
    assert_eq!(ds.format, Format::SgSeg);
    assert_eq!(ds.split("train").unwrap().len(), 2);
    let val = ds.split("valid").unwrap();
    assert_eq!(ds.split("validation").unwrap().len(), 1);
    assert!(ds.split("test").is_err());
    let s = &val[0];
    assert_eq!(s.id, "covid_2");
    assert!(s.image_path.ends_with("images/valid/images/covid_2.png"));
    assert!(
        s.mask_path
            .as_ref()
            .unwrap()
            .ends_with("images/valid/masks/mask_covid_2.png")
    );
    assert_eq!(
        s.meta.zones,
        Some([true, false, false, false, false, false])
    );
    assert_eq!(s.meta.laterality, Some(Laterality::Unilateral));
    let l = load_sample(s, 8, &opts()).unwrap();
    assert_eq!(l.image.len(), 3 * 64);
    assert_eq!(l.original_size, (20, 12));
    let m = l.mask.unwrap();
    assert_eq!(m.len(), 64);
    assert!(m.iter().all(|&v| v == 0.0 || v == 1.0));
    assert!(m.contains(&1.0));
    // The annotation file itself can be given too.
    let ds2 = Dataset::open(&r.join("prompts/annotation.json"), None).unwrap();
    assert_eq!(ds2.len(), 3);
}

#[test]
fn sgseg_bad_json_names_file_and_key() {
    let d = tempfile::tempdir().unwrap();
    write(
        &d.path().join("prompts/annotation.json"),
        r#"{"train": [{"caption": "x"}]}"#,
    );
    let e = Dataset::open(d.path(), None).unwrap_err().to_string();
    assert!(
        e.contains("annotation.json") && e.contains("train[0]") && e.contains("image_path"),
        "{e}"
    );
    write(
        &d.path().join("prompts/annotation.json"),
        "{\"train\": [\n{,}]}",
    );
    let e = Dataset::open(d.path(), None).unwrap_err().to_string();
    assert!(e.contains("annotation.json") && e.contains("line 2"), "{e}");
}

#[test]
fn lvit_xlsx_layout() {
    let ds = Dataset::open(&fixtures().join("lvit"), None).unwrap();
    assert_eq!(ds.format, Format::Lvit);
    let train = ds.split("train").unwrap();
    assert_eq!(train.len(), 3);
    assert!(train[0].image_path.ends_with("Train_Folder/img/ct_1.png"));
    assert!(
        train[0]
            .mask_path
            .as_ref()
            .unwrap()
            .ends_with("Train_Folder/labelcol/ct_1.png")
    );
    assert_eq!(train[0].source.location, "row 2");
    // Noisy published text is kept as is, and normalised for the model.
    assert!(train[0].caption.contains("one infected areas"));
    let l = load_sample(&train[0], 16, &opts()).unwrap();
    assert_eq!(
        l.caption,
        "Unilateral pulmonary infection, one infected area, middle left lung."
    );
    let raw = load_sample(
        &train[1],
        16,
        &SampleOptions {
            normalize_captions: false,
            ..opts()
        },
    )
    .unwrap();
    assert!(raw.caption.ends_with(".."));
    assert_eq!(train[1].meta.zones, Some([true; 6]));
    // `Image` naming the mask file.
    let val = ds.split("val").unwrap();
    assert_eq!(val[0].id, "ct_9");
    assert!(val[0].image_path.ends_with("Val_Folder/img/ct_9.png"));
    assert!(
        val[0]
            .mask_path
            .as_ref()
            .unwrap()
            .ends_with("Val_Folder/labelcol/mask_ct_9.png")
    );
    load_sample(&val[0], 16, &opts()).unwrap();
}

#[test]
fn lvit_missing_description_column() {
    let e = Dataset::open(&fixtures().join("lvit_no_description"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Train_text.xlsx") && e.contains("Description") && e.contains("Report"),
        "{e}"
    );
}

#[test]
fn guidedecoder_csv_layout() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    for n in ["covid_1", "covid_2", "covid_3"] {
        gray_png(&r.join(format!("Images/{n}.png")), 10, 10, 2);
        mask_png(
            &r.join(format!("GTs/mask_{n}.png")),
            10,
            10,
            (0, 0, 3, 3),
            1,
        );
    }
    write(
        &r.join("prompt/train.csv"),
        format!("Image,Description\nmask_covid_1.png,\"{CAP}\"\nmask_covid_2.png,\"{CAP}\"\n"),
    );
    write(
        &r.join("prompt/test.csv"),
        format!("Image,Description\nmask_covid_3.png,\"{CAP}\"\n"),
    );
    let ds = Dataset::open(r, None).unwrap();
    assert_eq!(ds.format, Format::GuideDecoder);
    // No val CSV: train.csv split by row order, int(0.8 * 2) = 1 row train, the rest val.
    assert_eq!(ds.split("train").unwrap()[0].id, "covid_1");
    assert_eq!(ds.split("train").unwrap().len(), 1);
    let v = &ds.split("val").unwrap()[0];
    assert_eq!(v.id, "covid_2");
    assert!(v.image_path.ends_with("Images/covid_2.png") && v.image_path.is_file());
    let t = &ds.split("test").unwrap()[0];
    assert!(t.image_path.ends_with("Images/covid_3.png"));
    assert!(
        t.mask_path
            .as_ref()
            .unwrap()
            .ends_with("GTs/mask_covid_3.png")
    );
    assert_eq!(t.caption, CAP);
    // A {0,1} mask: max is 1, so 1 is foreground.
    let l = load_sample(t, 10, &opts()).unwrap();
    assert_eq!(l.mask.unwrap().iter().filter(|&&v| v == 1.0).count(), 9);
}

#[test]
fn manifest_csv_with_quotes_splits_and_no_mask() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    gray_png(&r.join("a.png"), 8, 8, 0);
    gray_png(&r.join("sub/b.png"), 8, 8, 1);
    mask_png(&r.join("a_m.png"), 8, 8, (0, 0, 4, 4), 255);
    // Quoted commas, a doubled quote, a split column (with an alias), an inference row without mask.
    write(
        &r.join("data.csv"),
        "image,mask,text,split\n\
         a.png,a_m.png,\"Bilateral, two areas, \"\"quoted\"\" text.\",Train\n\
         sub/b.png,,\"Unilateral pulmonary infection, one infected area, upper left lung.\",valid\n",
    );
    let ds = Dataset::open(r, None).unwrap();
    assert_eq!(ds.format, Format::Manifest);
    let t = &ds.split("train").unwrap()[0];
    assert_eq!(t.caption, "Bilateral, two areas, \"quoted\" text.");
    assert_eq!(t.source.location, "row 2");
    let v = &ds.split("val").unwrap()[0];
    assert_eq!(v.mask_path, None);
    assert_eq!(v.id, "b");
    let l = load_sample(v, 4, &opts()).unwrap();
    assert!(l.mask.is_none());
    let e = load_sample(
        v,
        4,
        &SampleOptions {
            require_mask: true,
            ..opts()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("b.png") && e.to_string().contains("no mask"));
    // A manifest CSV given directly.
    assert_eq!(Dataset::open(&r.join("data.csv"), None).unwrap().len(), 2);
}

#[test]
fn format_detection_and_forcing() {
    let d = tempfile::tempdir().unwrap();
    let e = Dataset::open(d.path(), None).unwrap_err().to_string();
    assert!(e.contains("unrecognised dataset layout"), "{e}");
    manifest_dataset(d.path(), 1);
    let e = Dataset::open(d.path(), Some(Format::Lvit))
        .unwrap_err()
        .to_string();
    assert!(e.contains("_text.xlsx"), "{e}");
    let e = Dataset::open(&d.path().join("nope"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn dicom_ct_slices_with_window() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    // Stored values v, HU = v - 1024: pixel 0 is -600 HU (centre of the lung window).
    let px: Vec<i32> = (0..64).map(|i| if i == 0 { 424 } else { 2024 }).collect();
    for explicit in [true, false] {
        let name = format!("ct_{explicit}.dcm");
        write_dicom(
            &r.join(&name),
            8,
            8,
            &px,
            &DicomWriteOptions {
                explicit,
                ..Default::default()
            },
        )
        .unwrap();
    }
    let mask: Vec<i32> = (0..64).map(|i| (i % 8 < 4) as i32).collect();
    write_dicom(
        &r.join("ct_mask.dcm"),
        8,
        8,
        &mask,
        &DicomWriteOptions {
            rescale_intercept: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    write(
        &r.join("train.csv"),
        "image,mask,text\nct_true.dcm,ct_mask.dcm,left lung\nct_false.dcm,ct_mask.dcm,right lung\n",
    );
    let ds = Dataset::open(r, None).unwrap();
    for s in ds.split("train").unwrap() {
        let l = load_sample(s, 8, &opts()).unwrap();
        let expect = to_clip(&Plane {
            channels: 1,
            width: 1,
            height: 1,
            data: vec![0.5],
        });
        assert!(
            (l.image[0] - expect[0]).abs() < 1e-5,
            "{} vs {}",
            l.image[0],
            expect[0]
        );
        // +1000 HU is above the lung window: 1.0.
        let one = to_clip(&Plane {
            channels: 1,
            width: 1,
            height: 1,
            data: vec![1.0],
        });
        assert!((l.image[1] - one[0]).abs() < 1e-5);
        assert_eq!(l.mask.unwrap().iter().sum::<f32>(), 32.0);
        // Another window.
        let so = SampleOptions {
            decode: DecodeOptions {
                window: Some(Window {
                    center: -600.0,
                    width: 100.0,
                }),
            },
            ..opts()
        };
        assert!((load_sample(s, 8, &so).unwrap().image[0] - expect[0]).abs() < 1e-5);
    }
}

#[test]
fn nifti_volumes_nonempty_and_chosen_slices() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let dims = [6, 5, 4];
    let n = 6 * 5 * 4;
    // Image: HU = 2*v - 1000 via scl_slope/scl_inter; mask non-empty in slices 1 and 3.
    let img: Vec<i16> = (0..n).map(|i| (i % 50) as i16 * 10).collect();
    write_volume(&r.join("vol.nii.gz"), dims, &img, 4, 2.0, -1000.0).unwrap();
    let mask: Vec<i16> = (0..n)
        .map(|i| {
            let k = i / 30;
            ((k == 1 || k == 3) && i % 2 == 0) as i16
        })
        .collect();
    write_volume(&r.join("vol_mask.nii"), dims, &mask, 2, 0.0, 0.0).unwrap();
    write(
        &r.join("train.csv"),
        "image,mask,text\nvol.nii.gz,vol_mask.nii,lesion\n",
    );
    write(
        &r.join("test.csv"),
        "image,mask,text,slice\nvol.nii.gz,vol_mask.nii,lesion,0-1;3\n",
    );
    let ds = Dataset::open(r, None).unwrap();
    let train = ds.split("train").unwrap();
    let ids: Vec<&str> = train.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, vec!["vol#z1", "vol#z3"]);
    let test = ds.split("test").unwrap();
    assert_eq!(test.len(), 3);
    let l = load_sample(
        &train[0],
        5,
        &SampleOptions {
            decode: DecodeOptions { window: None },
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(l.original_size, (6, 5));
    assert!(l.mask.as_ref().unwrap().iter().sum::<f32>() > 0.0);
    let empty = load_sample(&test[0], 6, &opts()).unwrap();
    assert_eq!(empty.mask.unwrap().iter().sum::<f32>(), 0.0);
}
