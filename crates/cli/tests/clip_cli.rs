//! End-to-end: `tgcnet tokenize` and `tgcnet embed` against the PyTorch fixtures of the CLIP crate.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tgcnet_clip::weights::TensorMap;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tgcnet"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clip/tests/fixtures/clip")
}

fn texts() -> Vec<String> {
    let inputs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("inputs.json")).expect("inputs"))
            .expect("json");
    inputs["texts"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| t.as_str().expect("str").to_string())
        .collect()
}

fn max_err(got: &serde_json::Value, want: &[f32]) -> f32 {
    let got: Vec<f32> = got
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|v| v.as_f64().expect("num") as f32)
        })
        .collect();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn run_embed(clip: &Path, prefix: &str) {
    let exp =
        TensorMap::read_safetensors(&fixtures().join("expected.safetensors")).expect("expected");
    let images: Vec<PathBuf> = ["gray32.png", "rgb32.png", "rgb60x45.png"]
        .iter()
        .map(|n| fixtures().join("images").join(n))
        .collect();
    let mut cmd = bin();
    cmd.arg("embed").arg("--clip").arg(clip);
    for image in &images {
        cmd.arg("--image").arg(image);
    }
    // One flag per text, in the `--text=…` form that also takes texts starting with a hyphen.
    cmd.args(texts().iter().map(|t| format!("--text={t}")));
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    // Each repeated flag adds exactly one input (`--text a --text b` once gave three texts).
    let rows = |k: &str| json[k].as_array().map_or(0, Vec::len);
    assert_eq!(rows("text_embeds"), texts().len());
    assert_eq!(rows("image_embeds"), images.len());
    let e = max_err(
        &json["image_embeds"],
        &exp.tensors[&format!("{prefix}.image_embeds")].data,
    );
    println!("{prefix} image_embeds via CLI: {e:.2e}");
    assert!(e < 1e-4);
    let e = max_err(
        &json["text_embeds"],
        &exp.tensors[&format!("{prefix}.text_embeds")].data,
    );
    println!("{prefix} text_embeds via CLI: {e:.2e}");
    assert!(e < 1e-4);
}

#[test]
fn embed_hf_directory() {
    run_embed(&fixtures().join("hf"), "hf");
}

#[test]
fn embed_open_clip_file() {
    run_embed(&fixtures().join("openclip/tiny.safetensors"), "openclip");
}

#[test]
fn tokenize_prints_ids_per_line() {
    let exp =
        TensorMap::read_safetensors(&fixtures().join("expected.safetensors")).expect("expected");
    let ids = &exp.tensors["token_ids"];
    let mut child = bin()
        .arg("tokenize")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all((texts().join("\n") + "\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let lines: Vec<Vec<u32>> = String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        let want: Vec<u32> = ids.data[i * 77..(i + 1) * 77]
            .iter()
            .map(|v| *v as u32)
            .take_while(|v| *v != 0)
            .collect();
        assert_eq!(line, &want);
    }
    assert_eq!(lines[1], vec![49406, 49407], "empty text is start + end");
}

#[test]
fn tokenize_truncates_with_end_last() {
    let mut child = bin()
        .args(["tokenize", "--context-length", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"one two three four five six seven\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let ids: Vec<u32> = serde_json::from_slice(out.stdout.trim_ascii()).expect("json");
    assert_eq!(ids.len(), 5);
    assert_eq!(ids[0], 49406);
    assert_eq!(ids[4], 49407);
}

#[test]
fn embed_bad_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bad = tmp.path().join("scan.png");
    std::fs::write(&bad, b"not an image at all").expect("write");
    let out = bin()
        .arg("embed")
        .arg("--clip")
        .arg(fixtures().join("hf"))
        .arg("--image")
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scan.png") && !err.contains("panicked"),
        "{err}"
    );

    let out = bin()
        .args(["embed", "--clip", "/nonexistent/model", "--text", "x"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/model") && !err.contains("panicked"),
        "{err}"
    );
}
