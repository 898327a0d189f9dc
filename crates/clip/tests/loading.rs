//! Key coverage and bad-input behaviour of checkpoint loading.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use tgcnet_clip::model::{
    Layout, detect_layout, is_ignored_key, load_clip, load_into, open_clip_to_hf,
};
use tgcnet_clip::weights::{KeyStyle, TensorMap, collect_params};
use tgcnet_clip::{Clip, ClipConfig, ClipError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip")
}

fn hf_map() -> TensorMap {
    TensorMap::read_safetensors(&fixtures().join("hf/model.safetensors")).expect("read")
}

fn hf_cfg() -> ClipConfig {
    ClipConfig::from_file(&fixtures().join("hf/config.json")).expect("cfg")
}

#[test]
fn every_checkpoint_key_is_used_and_every_parameter_loaded() {
    let dev = Device::flex();
    for (map, cfg) in [(hf_map(), hf_cfg()), {
        let cfg = ClipConfig::from_file(&fixtures().join("openclip/tiny.json")).expect("cfg");
        let raw = TensorMap::read_safetensors(&fixtures().join("openclip/tiny.safetensors"))
            .expect("read");
        assert_eq!(detect_layout(&raw), Layout::OpenClip);
        (open_clip_to_hf(raw, &cfg).expect("rename"), cfg)
    }] {
        let model = Clip::new(&cfg, &dev);
        let n_params = collect_params(&model, "", KeyStyle::Torch, &|_, _, _| true).len();
        let (model, report) = load_into(model, &map).expect("load");
        assert!(report.missing.is_empty());
        assert_eq!(report.used.len(), n_params, "every parameter loaded");
        let weight_keys = map.tensors.keys().filter(|k| !is_ignored_key(k)).count();
        assert_eq!(
            report.used.len(),
            weight_keys,
            "every checkpoint tensor used"
        );
        // Round trip: what we collect back is what the file held.
        let back = collect_params(&model, "", KeyStyle::Torch, &|_, _, _| true);
        for (k, t) in &back {
            assert_eq!(&map.tensors[k], t, "{k}");
        }
        assert!(model.num_params() > 0);
    }
}

#[test]
fn missing_file_names_the_path() {
    let e = load_clip(Path::new("/no/such/clip-dir"), None, &Device::flex()).expect_err("error");
    assert!(e.to_string().contains("/no/such/clip-dir"), "{e}");
}

#[test]
fn truncated_safetensors_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let bytes = std::fs::read(fixtures().join("hf/model.safetensors")).expect("read");
    std::fs::write(
        dir.path().join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .expect("write");
    std::fs::copy(
        fixtures().join("hf/config.json"),
        dir.path().join("config.json"),
    )
    .expect("copy");
    let e = load_clip(dir.path(), None, &Device::flex()).expect_err("error");
    assert!(matches!(e, ClipError::Safetensors { .. }), "{e}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");
}

#[test]
fn wrong_shape_names_key_and_both_shapes() {
    let mut map = hf_map();
    let key = "vision_model.encoder.layers.0.mlp.fc1.weight";
    let t = map.tensors.get_mut(key).expect("key");
    // [64, 32] (PyTorch [out, in]) → [32, 32]
    t.shape = vec![32, 32];
    t.data.truncate(32 * 32);
    let e = load_into(Clip::new(&hf_cfg(), &Device::flex()), &map).expect_err("error");
    let msg = e.to_string();
    assert!(
        msg.contains(key) && msg.contains("[32, 32]") && msg.contains("[64, 32]"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let mut map = hf_map();
    map.tensors.remove("text_model.final_layer_norm.bias");
    let e = load_into(Clip::new(&hf_cfg(), &Device::flex()), &map).expect_err("error");
    assert!(
        e.to_string().contains("text_model.final_layer_norm.bias"),
        "{e}"
    );
}

#[test]
fn unknown_tensor_is_reported() {
    let mut map = hf_map();
    let t = map.tensors["logit_scale"].clone();
    map.tensors
        .insert("vision_model.extra_head.weight".into(), t);
    let e = load_into(Clip::new(&hf_cfg(), &Device::flex()), &map).expect_err("error");
    assert!(matches!(e, ClipError::UnusedKeys { .. }), "{e}");
    assert!(
        e.to_string().contains("vision_model.extra_head.weight"),
        "{e}"
    );
}

#[test]
fn open_clip_without_config_asks_for_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("weights.safetensors");
    std::fs::copy(fixtures().join("openclip/tiny.safetensors"), &p).expect("copy");
    let e = load_clip(&p, None, &Device::flex()).expect_err("error");
    assert!(e.to_string().contains("--config"), "{e}");
    // Given explicitly it loads.
    load_clip(
        &p,
        Some(&fixtures().join("openclip/tiny.json")),
        &Device::flex(),
    )
    .expect("load with config");
}
