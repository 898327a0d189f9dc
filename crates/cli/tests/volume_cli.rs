//! CT volumes end to end on the tiny preset: a model trained for one epoch on phantom pictures segments
//! a NIfTI volume and a DICOM series (both written here from the same pictures, with rotated and
//! translated geometry) into NIfTI mask volumes with the input's geometry, equal to segmenting the
//! slices one by one through `Segmenter`; `tgcnet eval` on a manifest of volumes reports per-volume
//! Dice.

use std::path::{Path, PathBuf};

use tgcnet_data::dicom::{DicomWriteOptions, SliceGeometry, write_dicom};
use tgcnet_data::imageio::{DecodeOptions, SliceRef, read_image};
use tgcnet_data::nifti::{Geometry, Header, read_volume, write_volume_with};
use tgcnet_infer::{SegmentOptions, Segmenter};

const CAPTION: &str =
    "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.";
/// Stored 0..255 (the phantom's grey levels) scaled so that the default lung window (W1500/L−600)
/// shows exactly the phantom picture: HU = 1500/255 · v − 1350.
const SLOPE: f64 = 1500.0 / 255.0;
const INTERCEPT: f64 = -1350.0;

mod common;

use common::{bin, ok};

/// Phantom data and a tiny model trained on it for one epoch.
fn trained(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    ok(bin()
        .args(["data", "phantom", "--size", "32", "--seed", "3"])
        .args(["--n-train", "16", "--n-val", "8", "--out"])
        .arg(&data));
    let cfg = dir.join("tiny.toml");
    std::fs::write(
        &cfg,
        "preset = \"tiny\"\n[train]\nepochs = 1\nbatch_size = 8\nlr = 1e-3\nwarmup_steps = 2\nseed = 5\nworkers = 2\n",
    )
    .expect("config");
    let run = dir.join("run");
    ok(bin()
        .arg("train")
        .arg("--config")
        .arg(&cfg)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&run));
    (data, run.join("best.safetensors"))
}

/// The validation pictures and masks of the phantom (32x32 grey levels), in manifest order.
fn val_pictures(data: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut r = csv::Reader::from_path(data.join("val.csv")).expect("val.csv");
    r.records()
        .map(|row| {
            let row = row.expect("row");
            let load = |p: &str| {
                image::open(data.join(p))
                    .expect("png")
                    .to_luma8()
                    .into_raw()
            };
            (load(&row[0]), load(&row[1]))
        })
        .collect()
}

/// A rotated (36.87° about z), left-handed (qfac −1), translated geometry with 0.75 x 0.8 x 2.5 mm
/// voxels, in which displayed rows run against j (anterior up).
fn oblique_geometry() -> Geometry {
    Geometry::from_affine(
        &[
            [-0.6, -0.48, 0.0, 90.5],
            [-0.45, 0.64, 0.0, -12.25],
            [0.0, 0.0, 2.5, -40.0],
        ],
        1,
    )
}

/// Writes the pictures as the slices of a NIfTI volume so that slice k, displayed, is picture k.
fn write_nifti(path: &Path, pictures: &[&[u8]], geometry: &Geometry, datatype: i16) {
    let dims = [32, 32, pictures.len()];
    let layout = geometry.slice_layout(dims, 2);
    let mut vox = vec![0i16; 32 * 32 * pictures.len()];
    for (k, pic) in pictures.iter().enumerate() {
        for y in 0..32 {
            for x in 0..32 {
                let (i, j) = layout.voxel(x, y);
                vox[i + 32 * (j + 32 * k)] = pic[y * 32 + x] as i16;
            }
        }
    }
    let (scl_slope, scl_inter) = if datatype == 2 {
        (1.0, 0.0)
    } else {
        (SLOPE as f32, INTERCEPT as f32)
    };
    let header = Header {
        dims,
        datatype,
        scl_slope,
        scl_inter,
        intent_code: 0,
        geometry,
    };
    write_volume_with(path, &header, &vox).expect("write nifti");
}

fn infer_volume(model: &Path, image: &Path, out: &Path, extra: &[&str]) -> String {
    ok(bin()
        .arg("infer")
        .arg("--checkpoint")
        .arg(model)
        .arg("--image")
        .arg(image)
        .args(["--text", CAPTION, "--batch-size", "4", "--out"])
        .arg(out)
        .args(extra))
}

/// `mask` (0/1 per pixel of the displayed slice) agrees with segmenting `picture` alone.
fn agrees(segmenter: &Segmenter, picture: &Path, slice: Option<SliceRef>, mask: &[u8]) {
    let opts = SegmentOptions::default();
    let plane = read_image(picture, slice, &DecodeOptions::default()).expect("slice");
    let single = segmenter.segment(&plane, CAPTION, &opts).expect("segment");
    assert_eq!(single.probabilities.len(), mask.len());
    for (p, (&m, &prob)) in mask.iter().zip(&single.probabilities).enumerate() {
        // Batched and single passes agree to ~1e-6: only a pixel at the threshold may differ.
        if (m == 1) != (prob > 0.5) {
            assert!((prob - 0.5).abs() < 1e-4, "{slice:?} pixel {p}: {prob}");
        }
    }
}

#[test]
fn volumes_in_mask_volumes_out() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (data, model) = trained(tmp.path());
    let val = val_pictures(&data);
    let pictures: Vec<&[u8]> = val.iter().take(6).map(|(p, _)| p.as_slice()).collect();
    let segmenter = Segmenter::load(&model, &burn::tensor::Device::flex()).expect("load");

    // NIfTI in: the mask volume has the input's dims and geometry, 0/1 voxels, and each slice is the
    // slice segmented alone.
    let scan = tmp.path().join("scan.nii.gz");
    write_nifti(&scan, &pictures, &oblique_geometry(), 4);
    let out = tmp.path().join("scan_mask.nii.gz");
    let strip = tmp.path().join("strip.png");
    let said = infer_volume(
        &model,
        &scan,
        &out,
        &["--overlay-strip", strip.to_str().unwrap()],
    );
    assert!(said.contains("lesion voxels"), "{said}");
    let (input, mask) = (
        read_volume(&scan).expect("scan"),
        read_volume(&out).expect("mask"),
    );
    assert_eq!(mask.dims, [32, 32, 6]);
    assert_eq!(mask.geometry, input.geometry);
    assert_eq!(mask.geometry.pixdim[..4], [-1.0, 0.75, 0.8, 2.5]);
    assert_eq!((mask.geometry.qform_code, mask.geometry.sform_code), (1, 1));
    assert_eq!(mask.geometry.sform_affine(), input.geometry.sform_affine());
    assert_eq!(mask.datatype, 2);
    let voxels = mask.voxels();
    assert!(voxels.iter().all(|&v| v == 0.0 || v == 1.0));
    assert!(
        voxels.contains(&1.0),
        "the trained model found no lesion at all"
    );
    for (k, picture) in pictures.iter().enumerate() {
        // Displayed slice k of the input is phantom picture k (the layout round trip) ...
        let shown = input.slice(&scan, 2, k).expect("slice").raw;
        assert!(shown.iter().zip(*picture).all(|(&a, &b)| a == b as f32));
        // ... and the mask's displayed slice k is that picture's segmentation.
        let m: Vec<u8> = mask
            .slice(&out, 2, k)
            .expect("slice")
            .raw
            .iter()
            .map(|&v| v as u8)
            .collect();
        agrees(&segmenter, &scan, Some(SliceRef { axis: 2, index: k }), &m);
    }
    let strip = image::open(&strip).expect("strip").to_rgb8();
    assert_eq!(strip.height() % 34, 32, "tiles of 32 px with 2 px gaps");

    // A volume's mask is a volume: a PNG --out is refused with the reason.
    let refused = bin()
        .arg("infer")
        .arg("--checkpoint")
        .arg(&model)
        .arg("--image")
        .arg(&scan)
        .args(["--text", CAPTION, "--out"])
        .arg(tmp.path().join("x.png"))
        .output()
        .expect("run");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("nii.gz"));

    dicom_series(tmp.path(), &model, &segmenter, &pictures);
    per_volume_eval(tmp.path(), &model, &val);
}

/// A DICOM series (tilted orientation, files named against their order) in: the mask volume's affine is
/// the one the tags give, voxel (i, j, k) is column i, row j of the k-th slice along the normal.
fn dicom_series(dir: &Path, model: &Path, segmenter: &Segmenter, pictures: &[&[u8]]) {
    let series = dir.join("series");
    std::fs::create_dir_all(&series).expect("dir");
    let (row, col) = ([0.8, 0.6, 0.0], [-0.48, 0.64, 0.6]);
    let normal = [0.36, -0.48, 0.8]; // row × col
    let first = [-100.0, 50.0, 30.0];
    let spacing = [0.9, 0.7]; // between rows, between columns
    let mut files = Vec::new();
    for (k, pic) in pictures.iter().enumerate() {
        let position = std::array::from_fn(|a| first[a] + 2.5 * k as f64 * normal[a]);
        let geometry = SliceGeometry {
            position: Some(position),
            orientation: Some([row[0], row[1], row[2], col[0], col[1], col[2]]),
            pixel_spacing: Some(spacing),
            slice_thickness: Some(2.5),
            instance_number: Some(100 - k as i64),
            series_uid: "1.2.826.0.1.3680043.10.99".into(),
            ..SliceGeometry::default()
        };
        let opts = DicomWriteOptions {
            rescale_slope: SLOPE,
            rescale_intercept: INTERCEPT,
            geometry,
            ..DicomWriteOptions::default()
        };
        // Names sort in reverse slice order (and one has no extension): the reader sorts by position.
        let name = if k == 2 {
            "IM_c".to_string()
        } else {
            format!("IM_{}.dcm", 9 - k)
        };
        let path = series.join(name);
        let px: Vec<i32> = pic.iter().map(|&v| v as i32).collect();
        write_dicom(&path, 32, 32, &px, &opts).expect("dicom");
        files.push(path);
    }
    std::fs::write(series.join("notes.txt"), "not DICOM").expect("notes");
    let out = dir.join("series_mask.nii.gz");
    infer_volume(model, &series, &out, &[]);
    let mask = read_volume(&out).expect("mask");
    assert_eq!(mask.dims, [32, 32, 6]);
    // The affine from the tags, in RAS: x and y of DICOM's LPS negated.
    let ras = |a: usize, v: f64| if a < 2 { -v } else { v };
    let expected: [[f64; 4]; 3] = std::array::from_fn(|a| {
        [
            ras(a, row[a] * spacing[1]),
            ras(a, col[a] * spacing[0]),
            ras(a, 2.5 * normal[a]),
            ras(a, first[a]),
        ]
    });
    for (a, exp_row) in expected.iter().enumerate() {
        for (c, &e) in exp_row.iter().enumerate() {
            let (s, q) = (
                mask.geometry.sform_affine()[a][c],
                mask.geometry.qform_affine()[a][c],
            );
            assert!(
                (s - e).abs() < 1e-4 && (q - e).abs() < 1e-4,
                "[{a}][{c}]: {s} / {q} vs {e}"
            );
        }
    }
    assert_eq!((mask.geometry.qform_code, mask.geometry.sform_code), (1, 1));
    let voxels = mask.voxels();
    assert!(voxels.iter().all(|&v| v == 0.0 || v == 1.0));
    for (k, file) in files.iter().enumerate() {
        let m: Vec<u8> = voxels[k * 1024..(k + 1) * 1024]
            .iter()
            .map(|&v| v as u8)
            .collect();
        agrees(segmenter, file, None, &m);
    }
}

/// `tgcnet eval` on a manifest of two volumes (slice samples `NAME#zK`) reports per-volume Dice.
fn per_volume_eval(dir: &Path, model: &Path, val: &[(Vec<u8>, Vec<u8>)]) {
    let vols = dir.join("vols");
    std::fs::create_dir_all(&vols).expect("dir");
    let mut csv = String::from("image,mask,text,split\n");
    for (name, range) in [("a", 0..4), ("b", 4..8)] {
        let pics: Vec<&[u8]> = val[range.clone()]
            .iter()
            .map(|(p, _)| p.as_slice())
            .collect();
        let masks: Vec<Vec<u8>> = val[range]
            .iter()
            .map(|(_, m)| m.iter().map(|&v| (v > 127) as u8).collect())
            .collect();
        let masks: Vec<&[u8]> = masks.iter().map(Vec::as_slice).collect();
        write_nifti(
            &vols.join(format!("{name}.nii.gz")),
            &pics,
            &oblique_geometry(),
            4,
        );
        write_nifti(
            &vols.join(format!("{name}_mask.nii.gz")),
            &masks,
            &oblique_geometry(),
            2,
        );
        csv.push_str(&format!(
            "{name}.nii.gz,{name}_mask.nii.gz,\"{CAPTION}\",val\n"
        ));
    }
    std::fs::write(vols.join("cases.csv"), csv).expect("csv");
    let out = dir.join("eval");
    let md = ok(bin()
        .arg("eval")
        .arg("--checkpoint")
        .arg(model)
        .arg("--data")
        .arg(vols.join("cases.csv"))
        .args(["--split", "val", "--out"])
        .arg(&out));
    assert!(md.contains("## Per volume"), "{md}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval.json")).expect("eval.json"))
            .expect("json");
    let v = &report["volumes"];
    assert_eq!(v["volumes"], 2, "{v}");
    let per = v["per_volume"].as_array().expect("rows");
    assert_eq!(per[0]["volume"], "a");
    let slices: u64 = per.iter().map(|r| r["slices"].as_u64().expect("n")).sum();
    assert_eq!(
        slices,
        report["summary"]["images"].as_u64().expect("images")
    );
    let mean = per
        .iter()
        .map(|r| r["dice"].as_f64().expect("dice"))
        .sum::<f64>()
        / 2.0;
    assert!((mean - v["dice_per_volume"].as_f64().expect("dice")).abs() < 1e-12);
}
