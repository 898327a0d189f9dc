//! End to end on the tiny preset: phantom data → train 2 epochs → eval → infer; and a run killed with
//! SIGKILL after its first checkpoint, resumed, equals an uninterrupted run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::GenericImageView;

use tgcnet_clip::weights::TensorMap;

mod common;

use common::{bin, ok};

/// `tgcnet eval --checkpoint CKPT --data DATA --split val EXTRA... --out OUT`: its markdown and eval.json.
fn eval_checkpoint(
    ckpt: &Path,
    data: &Path,
    extra: &[&str],
    out: &Path,
) -> (String, serde_json::Value) {
    let md = ok(bin()
        .arg("eval")
        .arg("--checkpoint")
        .arg(ckpt)
        .arg("--data")
        .arg(data)
        .args(["--split", "val"])
        .args(extra)
        .arg("--out")
        .arg(out));
    let json = serde_json::from_slice(&std::fs::read(out.join("eval.json")).expect("eval.json"))
        .expect("json");
    (md, json)
}

/// `tgcnet train --config CFG --data DATA --out RUN`, which must succeed.
fn train(cfg: &Path, data: &Path, run: &Path) {
    ok(bin()
        .arg("train")
        .arg("--config")
        .arg(cfg)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(run));
}

fn phantom(dir: &Path, n_train: usize) -> PathBuf {
    let data = dir.join("data");
    ok(bin()
        .args([
            "data",
            "phantom",
            "--size",
            "32",
            "--seed",
            "3",
            "--text-necessary",
        ])
        .args(["--n-train", &n_train.to_string(), "--n-val", "8", "--out"])
        .arg(&data));
    data
}

fn config(dir: &Path, epochs: usize) -> PathBuf {
    let p = dir.join(format!("run{epochs}.toml"));
    std::fs::write(
        &p,
        format!(
            "preset = \"tiny\"\n[train]\nepochs = {epochs}\nbatch_size = 8\nlr = 1e-3\nwarmup_steps = 2\nseed = 5\naugment = true\nworkers = 2\n"
        ),
    )
    .expect("write config");
    p
}

#[test]
fn train_eval_infer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = phantom(tmp.path(), 16);
    let run = tmp.path().join("run");
    train(&config(tmp.path(), 2), &data, &run);
    for f in [
        "config.toml",
        "metrics.jsonl",
        "metrics.csv",
        "curves.svg",
        "last.safetensors",
        "best.safetensors",
    ] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let rows = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    assert_eq!(rows.lines().count(), 2);
    let row: serde_json::Value =
        serde_json::from_str(rows.lines().last().expect("row")).expect("json");
    assert!(row["train_loss"].as_f64().expect("loss").is_finite());

    // Several runs' curves on the same axes: a line and a legend entry per run.
    let svg = tmp.path().join("compare.svg");
    let run_arg = run.display().to_string();
    ok(bin()
        .args(["curves", "--global", "--run", &run_arg, "--run"])
        .arg(format!("{run_arg}=again"))
        .arg("--out")
        .arg(&svg));
    let svg = std::fs::read_to_string(&svg).expect("svg");
    for label in ["run, per-image", "again, global", "epoch", "Dice (%)"] {
        assert!(svg.contains(label), "{label} missing from the chart");
    }
    assert_eq!(svg.matches("<polyline").count(), 6, "2 loss + 4 Dice lines");
    let missing = bin()
        .args(["curves", "--out", "x.svg", "--run"])
        .arg(tmp.path().join("nope"))
        .output()
        .expect("run");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("metrics.csv"));

    let masks = tmp.path().join("masks");
    let md = ok(bin()
        .arg("eval")
        .arg("--run")
        .arg(&run)
        .arg("--data")
        .arg(&data)
        .args(["--split", "val", "--save-masks"])
        .arg(&masks));
    assert!(
        md.contains("Dice per-image") && md.contains("laterality="),
        "{md}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("eval.json")).expect("eval.json"))
            .expect("json");
    assert_eq!(report["summary"]["images"], 8);
    assert!(std::fs::read_dir(&masks).expect("masks").count() >= 16);
    assert!(run.join("steps.jsonl").exists());

    // Text reliance: the same images with shuffled and with left/right-swapped captions, beside the
    // true captions' numbers.
    let reliance = tmp.path().join("reliance");
    let md = ok(bin()
        .arg("eval")
        .arg("--run")
        .arg(&run)
        .arg("--data")
        .arg(&data)
        .args(["--split", "val", "--captions", "shuffled,swapped", "--out"])
        .arg(&reliance));
    assert!(
        md.contains("Text reliance") && md.contains("| swapped |"),
        "{md}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reliance.join("eval.json")).expect("eval.json"))
            .expect("json");
    let conditions = report["conditions"].as_array().expect("conditions");
    let names: Vec<&str> = conditions
        .iter()
        .map(|c| c["condition"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["shuffled", "swapped"]);
    for c in conditions {
        let d = c["summary"]["dice_per_image"].as_f64().expect("dice");
        let delta = c["delta_dice_per_image"].as_f64().expect("delta");
        let truth = report["summary"]["dice_per_image"].as_f64().expect("dice");
        assert!((d - truth - delta).abs() < 1e-12);
        assert_eq!(c["summary"]["images"], 8);
    }

    let image = std::fs::read_dir(data.join("images"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.path());
    let image = image.unwrap_or_else(|| {
        // The phantom layout keeps images somewhere under data/: find one.
        walk(&data)
            .into_iter()
            .find(|p| {
                p.extension().is_some_and(|e| e == "png") && !p.to_string_lossy().contains("mask")
            })
            .expect("an image")
    });
    let out = tmp.path().join("pred.png");
    ok(bin()
        .arg("infer")
        .arg("--checkpoint")
        .arg(run.join("best.safetensors"))
        .arg("--image")
        .arg(&image)
        .args([
            "--text",
            "Unilateral pulmonary infection, one infected area, upper left lung.",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--overlay")
        .arg(tmp.path().join("ov.png"))
        .arg("--heatmap")
        .arg(tmp.path().join("heat.png")));
    let mask = image::open(&out).expect("mask png").to_luma8();
    assert_eq!(mask.dimensions(), (32, 32));

    // The tiny model records the image convention; "left" in the patient's convention is converted to
    // "right" before the model reads it: the same mask as asking for "right" in the model's own words.
    let infer_as = |text: &str, laterality: &str, name: &str| {
        let p = tmp.path().join(name);
        ok(bin()
            .arg("infer")
            .arg("--checkpoint")
            .arg(run.join("best.safetensors"))
            .arg("--image")
            .arg(&image)
            .args(["--text", text, "--laterality", laterality, "--out"])
            .arg(&p));
        std::fs::read(&p).expect("mask")
    };
    let patient_left = infer_as(
        "Unilateral pulmonary infection, one infected area, upper left lung.",
        "patient",
        "patient-left.png",
    );
    let image_right = infer_as(
        "Unilateral pulmonary infection, one infected area, upper right lung.",
        "image",
        "image-right.png",
    );
    assert_eq!(patient_left, image_right);
    assert!(tmp.path().join("ov.png").exists() && tmp.path().join("heat.png").exists());

    // Masks come back at the input's own size, also for a non-square picture.
    let wide = tmp.path().join("wide.png");
    image::imageops::resize(
        &image::open(&image).expect("image").to_luma8(),
        48,
        40,
        image::imageops::FilterType::Triangle,
    )
    .save(&wide)
    .expect("save");
    let wide_mask = tmp.path().join("wide-mask.png");
    ok(bin()
        .arg("infer")
        .arg("--checkpoint")
        .arg(run.join("best.safetensors"))
        .arg("--image")
        .arg(&wide)
        .args(["--text", "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."])
        .arg("--out")
        .arg(&wide_mask)
        .arg("--overlay")
        .arg(tmp.path().join("wide-ov.png")));
    assert_eq!(
        image::open(&wide_mask).expect("mask").dimensions(),
        (48, 40)
    );
    assert_eq!(
        image::open(tmp.path().join("wide-ov.png"))
            .expect("overlay")
            .dimensions(),
        (48, 40)
    );

    // A float16 export of the last training state: half the parameter file, the same predictions to
    // within float16 rounding.
    let half = tmp.path().join("half.safetensors");
    ok(bin()
        .arg("export")
        .arg("--checkpoint")
        .arg(run.join("last.safetensors"))
        .arg("--out")
        .arg(&half)
        .arg("--f16"));
    let full_len = std::fs::metadata(run.join("best.safetensors"))
        .expect("best")
        .len();
    let half_len = std::fs::metadata(&half).expect("half").len();
    assert!(half_len * 10 < full_len * 6, "{half_len} vs {full_len}");
    let (_, half_report) = eval_checkpoint(&half, &data, &[], &tmp.path().join("eval-half"));
    let dice = |r: &serde_json::Value| r["summary"]["dice_global"].as_f64().expect("dice");
    // best.safetensors is the last epoch's here only if Dice improved; compare with the run's own
    // last-epoch validation row instead.
    let last_row: serde_json::Value =
        serde_json::from_str(rows.lines().last().expect("row")).expect("json");
    let d_last = last_row["val_dice_global"].as_f64().expect("dice");
    assert!(
        (dice(&half_report) - d_last).abs() < 0.02,
        "float16 export Dice {} vs {d_last}",
        dice(&half_report)
    );

    // Batch inference over a manifest: the same picture twice with different captions keeps both
    // results, a row with an id is named by it, an unreadable picture is skipped and reported, and
    // results.csv scores the rows that have a mask.
    let val_rows: Vec<String> = std::fs::read_to_string(data.join("val.csv"))
        .expect("val.csv")
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    let first = val_rows[0].split(',').collect::<Vec<_>>();
    let (img, mask) = (data.join(first[0]), data.join(first[1]));
    std::fs::write(tmp.path().join("broken.png"), b"not a png").expect("write");
    let manifest = tmp.path().join("batch.csv");
    std::fs::write(
        &manifest,
        format!(
            "id,image,mask,text\n,{img},{mask},\"Unilateral pulmonary infection, one infected area, upper left lung.\"\n,{img},{mask},\"Unilateral pulmonary infection, one infected area, lower right lung.\"\ncase7,{img},,\"Bilateral pulmonary infection.\"\n,{broken},,\"upper left lung\"\n",
            img = img.display(),
            mask = mask.display(),
            broken = tmp.path().join("broken.png").display()
        ),
    )
    .expect("manifest");
    let batch_dir = tmp.path().join("batch");
    ok(bin()
        .arg("infer")
        .arg("--checkpoint")
        .arg(run.join("best.safetensors"))
        .arg("--manifest")
        .arg(&manifest)
        .args(["--batch-size", "3", "--on-bad-sample", "skip", "--out-dir"])
        .arg(&batch_dir));
    let stem = img
        .file_stem()
        .expect("stem")
        .to_string_lossy()
        .into_owned();
    for f in [
        format!("{stem}_mask.png"),
        format!("{stem}_2_mask.png"),
        "case7_mask.png".to_string(),
        format!("{stem}_overlay.png"),
        format!("{stem}_2_heatmap.png"),
    ] {
        assert!(batch_dir.join(&f).exists(), "{f} missing");
    }
    let mut results = csv::Reader::from_path(batch_dir.join("results.csv")).expect("results.csv");
    let header = results.headers().expect("header").clone();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let rows: Vec<csv::StringRecord> = results.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(&rows[0][col("mask_file")], format!("{stem}_mask.png"));
    assert_eq!(&rows[1][col("mask_file")], format!("{stem}_2_mask.png"));
    for r in &rows[..2] {
        let d: f64 = r[col("dice")].parse().expect("dice of a row with a mask");
        assert!((0.0..=1.0).contains(&d));
        let fg: f64 = r[col("foreground_fraction")].parse().expect("fraction");
        assert!((0.0..=1.0).contains(&fg));
    }
    assert_eq!(&rows[2][col("dice")], "", "no mask, no Dice");
    assert!(
        rows[3][col("error")].contains("broken.png"),
        "{:?}",
        &rows[3]
    );
    // Without --on-bad-sample skip, the broken picture stops the run with its name.
    let o = bin()
        .arg("infer")
        .arg("--checkpoint")
        .arg(run.join("best.safetensors"))
        .arg("--manifest")
        .arg(&manifest)
        .arg("--out-dir")
        .arg(tmp.path().join("batch-fail"))
        .output()
        .expect("run");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("broken.png"));
    // One caption over a folder.
    let folder_out = tmp.path().join("folder");
    ok(bin()
        .arg("infer")
        .arg("--checkpoint")
        .arg(run.join("best.safetensors"))
        .arg("--images")
        .arg(data.join("images"))
        .args([
            "--text",
            "Unilateral pulmonary infection, one infected area, upper left lung.",
            "--out-dir",
        ])
        .arg(&folder_out));
    let listed = std::fs::read_to_string(folder_out.join("results.csv")).expect("results");
    assert_eq!(
        listed.lines().count(),
        1 + 16 + 8,
        "every picture of the folder"
    );

    // An empty caption is a clear error.
    let o = bin()
        .arg("infer")
        .arg("--checkpoint")
        .arg(run.join("best.safetensors"))
        .arg("--image")
        .arg(&image)
        .args(["--text", "  ", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("caption is empty"));
}

/// The main job on a tiny configuration: the structure of demo.json, demo.md and report.html (not the
/// score), and a second invocation that resumes the finished arms.
#[test]
fn demo_writes_its_json_and_report() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("demo");
    let demo = || {
        ok(bin()
            .args([
                "demo",
                "--preset",
                "tiny",
                "--size",
                "32",
                "--n-train",
                "16",
                "--n-val",
                "8",
            ])
            .args(["--epochs", "1", "--examples", "2", "--out"])
            .arg(&out))
    };
    let printed = demo();
    assert!(
        printed.contains("| full |") && printed.contains("| text-off |"),
        "{printed}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("demo.json")).expect("demo.json"))
            .expect("json");
    for key in [
        "/full/dice_per_image",
        "/text_off/dice_per_image",
        "/counterfactual/dice_per_image",
        "/counterfactual/text_off_dice_per_image",
        "/full/shuffled_dice_per_image",
        "/full/swapped_dice_per_image",
        "/text_gain_dice_per_image",
        "/seconds",
    ] {
        let v = json
            .pointer(key)
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::NAN);
        assert!(v.is_finite(), "{key}: {v}");
    }
    for key in [
        "/full/dice_per_image",
        "/text_off/dice_per_image",
        "/counterfactual/dice_per_image",
    ] {
        let v = json.pointer(key).and_then(|v| v.as_f64()).unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&v), "{key} is a fraction: {v}");
    }
    assert_eq!(json["counterfactual"]["images"], 8);
    assert_eq!(json["resumed"], false);
    assert!(out.join("demo.md").exists());
    let html = std::fs::read_to_string(out.join("report.html")).expect("report");
    // Self-contained: pictures inlined, charts inline, nothing fetched.
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert_eq!(html.matches("<svg").count(), 2, "two charts");
    for text in [
        "Training loss",
        "optimizer step",
        "Validation Dice per image",
        "epoch",
        "counterfactual caption",
    ] {
        assert!(html.contains(text), "report lacks {text}");
    }
    // 2 examples × 6 pictures.
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 12);

    // Run again: both arms are finished and resume without training; the result is written again.
    demo();
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("demo.json")).expect("demo.json"))
            .expect("json");
    assert_eq!(again["resumed"], true);
    assert_eq!(
        again["full"]["dice_per_image"],
        json["full"]["dice_per_image"]
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn killed_run_resumes_to_the_same_result() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = phantom(tmp.path(), 48);
    let cfg = config(tmp.path(), 4);
    let straight = tmp.path().join("straight");
    ok(bin()
        .arg("train")
        .arg("--config")
        .arg(&cfg)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&straight));

    let killed = tmp.path().join("killed");
    let mut child = bin()
        .arg("train")
        .arg("--config")
        .arg(&cfg)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&killed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    while !killed.join("last.safetensors").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    let meta = TensorMap::read_metadata(&killed.join("last.safetensors")).expect("meta");
    let done: serde_json::Value = serde_json::from_str(&meta["progress"]).expect("progress");
    let done = done["epochs_done"].as_u64().expect("epochs_done");
    assert!(done < 4, "the run finished before it could be killed");

    ok(bin()
        .arg("train")
        .arg("--resume")
        .arg("--out")
        .arg(&killed)
        .arg("--data")
        .arg(&data));
    let a = TensorMap::read_safetensors(&straight.join("last.safetensors")).expect("a");
    let b = TensorMap::read_safetensors(&killed.join("last.safetensors")).expect("b");
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        b.tensors.keys().collect::<Vec<_>>()
    );
    let mut worst = 0.0f32;
    for (k, ta) in &a.tensors {
        let tb = &b.tensors[k];
        for (x, y) in ta.data.iter().zip(&tb.data) {
            worst = worst.max((x - y).abs());
        }
    }
    println!(
        "killed after {done} epoch(s); max |straight - resumed| over params and moments: {worst:e}"
    );
    // Same data order, same augmentation, same kernels: bit-identical on the CPU.
    assert_eq!(worst, 0.0, "resumed run differs by {worst}");
    let rows = std::fs::read_to_string(killed.join("metrics.jsonl")).expect("metrics");
    assert_eq!(rows.lines().count(), 4);
}

/// Every error names its file once, and the OS error once.
#[test]
fn errors_name_the_file_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("nope.safetensors");
    let picture = tmp.path().join("nope.png");
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec![
                "infer".into(),
                "--checkpoint".into(),
                missing.clone().into(),
                "--image".into(),
                picture.clone().into(),
                "--text".into(),
                "upper left lung".into(),
                "--out".into(),
                tmp.path().join("m.png").into(),
            ],
            "nope.safetensors",
        ),
        (
            vec![
                "export".into(),
                "--checkpoint".into(),
                missing.clone().into(),
                "--out".into(),
                tmp.path().join("o.safetensors").into(),
            ],
            "nope.safetensors",
        ),
        (
            vec![
                "data".into(),
                "check".into(),
                tmp.path().join("no-dataset").into(),
            ],
            "no-dataset",
        ),
        (
            vec!["info".into(), "--checkpoint".into(), missing.clone().into()],
            "nope.safetensors",
        ),
    ];
    for (args, name) in cases {
        let o = bin().args(&args).output().expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert_eq!(err.matches(name).count(), 1, "{args:?}: {err}");
        assert!(
            err.matches("No such file or directory").count() <= 1,
            "{args:?}: {err}"
        );
    }
}

/// A second learning-rate cycle from a checkpoint (`--init`), per-epoch snapshots, their average
/// (`export` with several checkpoints) and a threshold sweep in `eval`.
#[test]
fn init_snapshots_average_and_threshold_sweep() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = phantom(tmp.path(), 16);
    let cfg = tmp.path().join("snap.toml");
    std::fs::write(
        &cfg,
        "preset = \"tiny\"\n[train]\nepochs = 2\nbatch_size = 8\nlr = 1e-3\nwarmup_steps = 2\nseed = 5\nsnapshots = true\n",
    )
    .expect("write config");
    let run = tmp.path().join("run");
    ok(bin()
        .arg("train")
        .arg("--config")
        .arg(&cfg)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&run));
    let (e1, e2) = (
        run.join("epoch-001.safetensors"),
        run.join("epoch-002.safetensors"),
    );
    let avg = tmp.path().join("avg.safetensors");
    ok(bin()
        .arg("export")
        .arg("--checkpoint")
        .arg(&e1)
        .arg("--checkpoint")
        .arg(&e2)
        .arg("--out")
        .arg(&avg));
    let read = |p: &Path| TensorMap::read_safetensors(p).expect("read").tensors;
    let (a, b, m) = (read(&e1), read(&e2), read(&avg));
    assert_eq!(m.len(), a.len());
    let mut changed = 0;
    for (k, t) in &m {
        for ((x, y), z) in a[k].data.iter().zip(&b[k].data).zip(&t.data) {
            assert!((0.5 * (x + y) - z).abs() <= 1e-6 * (1.0 + z.abs()), "{k}");
            changed += usize::from(x != y);
        }
    }
    assert!(changed > 0, "the two epochs hold the same parameters");

    // A sweep scores several thresholds from one pass; its 0.5 row is the summary.
    let (md, report) = eval_checkpoint(
        &avg,
        &data,
        &["--sweep", "0.3,0.5,0.7"],
        &tmp.path().join("eval-avg"),
    );
    assert!(
        md.contains("\n| threshold | Dice per-image | Dice global |\n")
            && md.contains("\n| 0.7 | "),
        "{md}"
    );
    let sweep = report["sweep"].as_array().expect("sweep");
    assert_eq!(sweep.len(), 3);
    let at = |r: &serde_json::Value| r["dice_global"].as_f64().expect("dice");
    assert!(
        (at(&sweep[1]) - report["summary"]["dice_global"].as_f64().expect("dice")).abs() < 1e-12
    );
    // Starting from the average with a vanishing learning rate validates the average's parameters: the
    // first epoch's validation Dice is the average's own.
    let still = tmp.path().join("still.toml");
    std::fs::write(
        &still,
        "preset = \"tiny\"\n[train]\nepochs = 1\nbatch_size = 8\nlr = 1e-12\nwarmup_steps = 0\nseed = 9\naugment = false\n",
    )
    .expect("write config");
    let fine = tmp.path().join("fine");
    ok(bin()
        .arg("train")
        .arg("--config")
        .arg(&still)
        .arg("--init")
        .arg(&avg)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&fine));
    let rows = std::fs::read_to_string(fine.join("metrics.jsonl")).expect("metrics");
    let row: serde_json::Value =
        serde_json::from_str(rows.lines().next().expect("row")).expect("json");
    let fine_dice = row["val_dice_global"].as_f64().expect("dice");
    let avg_dice = report["summary"]["dice_global"].as_f64().expect("dice");
    assert!(
        (fine_dice - avg_dice).abs() < 1e-6,
        "{fine_dice} vs {avg_dice}"
    );
    // So does a model with the decoder's full-resolution refinement started from the average, which
    // lacks that stage: the stage starts at zero, and its parameters are in the run's training state.
    let refined_cfg = tmp.path().join("refine.toml");
    let still_text = std::fs::read_to_string(&still).expect("read config");
    std::fs::write(
        &refined_cfg,
        still_text.replace("[train]", "[model.decoder]\nrefine = 4\n[train]"),
    )
    .expect("write config");
    let refined = tmp.path().join("refined");
    ok(bin()
        .arg("train")
        .arg("--config")
        .arg(&refined_cfg)
        .arg("--init")
        .arg(&avg)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&refined));
    let rows = std::fs::read_to_string(refined.join("metrics.jsonl")).expect("metrics");
    let row: serde_json::Value =
        serde_json::from_str(rows.lines().next().expect("row")).expect("json");
    let refined_dice = row["val_dice_global"].as_f64().expect("dice");
    assert!(
        (refined_dice - avg_dice).abs() < 1e-6,
        "{refined_dice} vs {avg_dice}"
    );
    let saved = read(&refined.join("last.safetensors"));
    assert!(saved.keys().any(|k| k.starts_with("param.decoder.refine.")));

    // `--threshold 0.7` scores what the sweep's 0.7 row did.
    let (_, high) = eval_checkpoint(
        &avg,
        &data,
        &["--threshold", "0.7"],
        &tmp.path().join("eval-high"),
    );
    assert_eq!(high["threshold"].as_f64(), Some(0.7));
    assert!((at(&sweep[2]) - high["summary"]["dice_global"].as_f64().expect("dice")).abs() < 1e-12);
    // `export --threshold 0.7` makes it the model's default: `eval` without `--threshold` uses it, and
    // `info` shows it.
    let at_07 = tmp.path().join("avg-07.safetensors");
    ok(bin()
        .arg("export")
        .arg("--checkpoint")
        .arg(&avg)
        .args(["--threshold", "0.7", "--out"])
        .arg(&at_07));
    let (_, by_default) = eval_checkpoint(&at_07, &data, &[], &tmp.path().join("eval-07"));
    assert_eq!(by_default["threshold"].as_f64(), Some(0.7));
    assert_eq!(by_default["summary"], high["summary"]);
    let info = ok(bin().arg("info").arg("--checkpoint").arg(&at_07));
    assert!(info.contains("default to threshold 0.7 "), "{info}");
    let (_, back) = eval_checkpoint(
        &at_07,
        &data,
        &["--threshold", "0.5"],
        &tmp.path().join("eval-05"),
    );
    assert_eq!(back["summary"], report["summary"]);

    let missing = bin()
        .arg("train")
        .arg("--config")
        .arg(&cfg)
        .args(["--init", "nope.safetensors", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("x"))
        .output()
        .expect("run");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.safetensors"));
}

/// Test-time views: `export --tta` makes them the model's default, which `eval` and `infer` then use;
/// `--tta none` runs one forward pass; `eval --tta` on the plain model scores what the exported default
/// scores; a side the model cannot take is refused, naming it.
#[test]
fn test_time_views_default_and_override() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = phantom(tmp.path(), 16);
    let run = tmp.path().join("run");
    train(&config(tmp.path(), 1), &data, &run);
    let plain = run.join("best.safetensors");
    let viewed = tmp.path().join("viewed.safetensors");
    ok(bin()
        .arg("export")
        .arg("--checkpoint")
        .arg(&plain)
        .args(["--tta", "48,flip", "--out"])
        .arg(&viewed));
    let dice = |r: &serde_json::Value| r["summary"]["dice_global"].as_f64().expect("dice");
    let (md, default) = eval_checkpoint(&viewed, &data, &[], &tmp.path().join("e-default"));
    assert!(
        md.contains("Test-time views averaged: model side + 48 px + mirrored."),
        "{md}"
    );
    assert_eq!(default["tta"]["sides"], serde_json::json!([48]));
    assert_eq!(default["tta"]["hflip"], serde_json::json!(true));
    let (_, asked) = eval_checkpoint(
        &plain,
        &data,
        &["--tta", "48,flip"],
        &tmp.path().join("e-asked"),
    );
    assert!((dice(&asked) - dice(&default)).abs() < 1e-9);
    let (md, none) = eval_checkpoint(
        &viewed,
        &data,
        &["--tta", "none"],
        &tmp.path().join("e-none"),
    );
    assert!(none.get("tta").is_none() && !md.contains("Test-time"));
    let (_, plain_report) = eval_checkpoint(&plain, &data, &[], &tmp.path().join("e-plain"));
    assert!((dice(&none) - dice(&plain_report)).abs() < 1e-9);

    // infer follows the model's default and `--tta none` alike: its mask is eval's prediction.
    let row = std::fs::read_to_string(data.join("val.csv")).expect("val.csv");
    let fields: Vec<String> = row
        .lines()
        .nth(1)
        .expect("row")
        .split(',')
        .map(str::to_string)
        .collect();
    let (img, text) = (data.join(&fields[0]), fields[2..].join(","));
    let text = text.trim_matches('"').to_string();
    // (The views' effect on the logits is unit-tested in tgcnet_model::tta; a model trained one epoch may
    // predict nothing either way, so here the views are checked by what the commands report.)
    let infer = |ckpt: &Path, extra: &[&str], name: &str| {
        let out = tmp.path().join(name);
        let run = bin()
            .arg("infer")
            .arg("--checkpoint")
            .arg(ckpt)
            .arg("--image")
            .arg(&img)
            .args(["--text", &text])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let said = String::from_utf8_lossy(&run.stderr)
            .contains("test-time views averaged: model side + 48 px + mirrored");
        (image::open(&out).expect("mask").to_luma8().into_raw(), said)
    };
    let (a, b) = (
        infer(&viewed, &[], "a.png"),
        infer(&plain, &["--tta", "48,flip"], "b.png"),
    );
    assert!(a.1 && b.1 && a.0 == b.0);
    let (c, d) = (
        infer(&viewed, &["--tta", "none"], "c.png"),
        infer(&plain, &[], "d.png"),
    );
    assert!(!c.1 && !d.1 && c.0 == d.0);

    let bad = bin()
        .arg("eval")
        .arg("--checkpoint")
        .arg(&plain)
        .arg("--data")
        .arg(&data)
        .args(["--split", "val", "--tta", "40"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("test-time side 40"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// `tgcnet info | head -1`: when the reader goes away, the command ends quietly (killed by SIGPIPE, as
/// Unix tools are) instead of panicking in `println!`. The pipe is closed before the process has
/// printed anything (it builds the model first), so every one of its writes meets a closed pipe.
#[cfg(unix)]
#[test]
fn info_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut child = bin()
        .args(["info", "--preset", "small"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    const SIGPIPE: i32 = 13; // on Linux and the BSDs
    assert_eq!(
        out.status.signal(),
        Some(SIGPIPE),
        "{:?}: {err}",
        out.status
    );
}
