//! Parity of the Rust TGC-Net forward pass with the PyTorch reference (scripts/reference/tgcnet_ref.py).
//!
//! The fixture (crates/model/tests/fixtures/reference/, written by
//! scripts/reference/make_parity_fixture.py) holds a tiny-preset checkpoint with random, perturbed weights
//! in our checkpoint layout, the inputs (images, CLIP ids, knowledge passages and matches) and what PyTorch
//! computed from them. Here the checkpoint is loaded with `TgcNet::load_params_file` and the forward pass
//! must reproduce PyTorch's logits and similarity maps to 1e-4 (absolute). Intermediates (the SSE pyramid,
//! DATE's features, the knowledge cache) are compared too, so that a mismatch names its module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;
use tgcnet_clip::weights::{HostTensor, TensorMap};
use tgcnet_clip::{Activation, Tokenizer};
use tgcnet_model::date::encode_passages;
use tgcnet_model::{CaptionEncoder, TextBatch, TgcNet, TgcNetConfig};

const TOL: f32 = 1e-4;

#[derive(Deserialize)]
struct Inputs {
    captions: Vec<String>,
    ids: Vec<Vec<i64>>,
    passages: Vec<String>,
    passage_ids: Vec<Vec<i64>>,
    knowledge: BTreeMap<String, Vec<Vec<usize>>>,
    vlcm_scales: Vec<usize>,
    variant: Variant,
}

/// Config changes of the fixture's variant (same weights): the `small` preset's exact GELU and trainable
/// text tower, whose passages are encoded in the forward pass rather than cached.
#[derive(Deserialize)]
struct Variant {
    activation: Activation,
    freeze_text: bool,
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference")
}

fn ids_tensor(rows: &[Vec<i64>], dev: &Device) -> Tensor<2, Int> {
    let (n, l) = (rows.len(), rows[0].len());
    let flat: Vec<i64> = rows.concat();
    Tensor::from_data(TensorData::new(flat, [n, l]), dev)
}

fn tensor<const D: usize>(t: &HostTensor, dev: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), dev)
}

fn host<const D: usize>(t: Tensor<D>) -> HostTensor {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data");
    HostTensor::new(shape, data)
}

/// Max absolute difference, after checking the shapes.
fn max_err(name: &str, got: &HostTensor, want: &HostTensor) -> f32 {
    assert_eq!(got.shape, want.shape, "{name}: shape");
    let err = got
        .data
        .iter()
        .zip(&want.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err.is_finite(), "{name}: non-finite values");
    err
}

#[test]
fn forward_matches_pytorch_reference() {
    let dir = fixture();
    let dev = Device::flex();
    let inputs: Inputs = serde_json::from_str(
        &std::fs::read_to_string(dir.join("inputs.json")).expect("inputs.json"),
    )
    .expect("inputs.json: JSON");
    let expected =
        TensorMap::read_safetensors(&dir.join("expected.safetensors")).expect("expected");
    let want = |k: &str| {
        expected
            .tensors
            .get(k)
            .unwrap_or_else(|| panic!("expected.safetensors has no `{k}`"))
    };

    // The checkpoint names its config, as `save_params` writes it.
    let params = dir.join("params.safetensors");
    let meta = TensorMap::read_metadata(&params).expect("metadata");
    assert_eq!(
        meta.get("format").map(String::as_str),
        Some("tgcnet-params")
    );
    let mut cfg = TgcNetConfig::from_toml_str(&meta["tgcnet_config"]).expect("tgcnet_config");
    assert_eq!(
        cfg.clip.model,
        TgcNetConfig::tiny().clip.model,
        "the fixture is the tiny preset"
    );
    cfg.date.knowledge_file = Some(dir.join("knowledge.toml"));

    // Inputs: our tokenizer and knowledge matcher agree with what the fixture feeds PyTorch.
    let encoder = CaptionEncoder::new(&cfg).expect("caption encoder");
    let kb = encoder.knowledge.as_ref().expect("knowledge base");
    let texts: Vec<&str> = kb.passages.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, inputs.passages, "passage texts");
    let ctx = cfg.clip.model.text.context_length;
    let tok = Tokenizer::new().expect("tokenizer");
    let passage_ids: Vec<i64> = tok
        .tokenize_padded_flat(&texts, ctx)
        .expect("tokenize")
        .into_iter()
        .map(i64::from)
        .collect();
    assert_eq!(passage_ids, inputs.passage_ids.concat(), "passage ids");
    let captions: Vec<&str> = inputs.captions.iter().map(String::as_str).collect();
    let batch = encoder.encode(&captions, &dev).expect("encode");
    let ids: Vec<i64> = batch
        .ids
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("ids");
    // The batch is padded to its longest caption, not to CLIP's context: each reference row is ours
    // followed by padding only.
    let width = ids.len() / inputs.ids.len();
    for (row, reference) in ids.chunks(width).zip(&inputs.ids) {
        assert_eq!(row, &reference[..width], "caption ids");
        assert!(
            reference[width..].iter().all(|&t| t == 0),
            "the batch cut real tokens: {reference:?}"
        );
    }
    assert_eq!(
        batch.knowledge, inputs.knowledge["both"],
        "matched passages"
    );

    // The checkpoint has exactly our parameters (a full diff before the loader's first-error message).
    let model = TgcNet::new_with(&cfg, &encoder, &dev).expect("model");
    let ours: BTreeMap<String, Vec<usize>> = model
        .checkpoint_params()
        .into_iter()
        .map(|(k, t)| (k, t.shape))
        .collect();
    let file = TensorMap::read_safetensors(&params).expect("params");
    let theirs: BTreeMap<String, Vec<usize>> = file
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.clone()))
        .collect();
    let missing: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    let extra: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    let shapes: Vec<_> = ours
        .iter()
        .filter(|(k, s)| theirs.get(*k).is_some_and(|t| t != *s))
        .map(|(k, s)| format!("{k}: ours {s:?}, file {:?}", theirs[k]))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && shapes.is_empty(),
        "checkpoint keys differ\nmissing in the file: {missing:?}\nnot ours: {extra:?}\nshapes: {shapes:?}"
    );
    let model = model.load_params_file(&params).expect("load_params_file");
    assert_eq!(model.num_passages(), inputs.passages.len());

    let images: Tensor<4> = tensor(want("images"), &dev);
    let ids = ids_tensor(&inputs.ids, &dev);
    let mut report = Vec::new();
    let mut check = |name: String, got: HostTensor, want: &HostTensor| {
        let err = max_err(&name, &got, want);
        report.push((name, err));
    };

    // Intermediates.
    let pyramid = model.sse.forward(&model.vision, images.clone());
    check(
        "pyramid.p2".into(),
        host(pyramid.p2.clone().expect("p2")),
        want("pyramid.p2"),
    );
    check("pyramid.p4".into(), host(pyramid.p4), want("pyramid.p4"));
    check("pyramid.p8".into(), host(pyramid.p8), want("pyramid.p8"));
    check("pyramid.p16".into(), host(pyramid.p16), want("pyramid.p16"));
    let tower = model.text.as_ref().expect("text tower");
    let passages = encode_passages(tower, ids_tensor(&inputs.passage_ids, &dev));
    check(
        "knowledge_cache".into(),
        host(passages.clone()),
        want("knowledge_cache"),
    );
    // Every passage is matched by one of the two reports, so the batch's passages are all of them.
    let date = model.date.as_ref().expect("DATE");
    let features = date.forward(
        tower,
        ids.clone(),
        Some(passages),
        &inputs.knowledge["both"],
    );
    check(
        "date.tokens".into(),
        host(features.tokens),
        want("date.tokens"),
    );
    check(
        "date.sentence".into(),
        host(features.sentence),
        want("date.sentence"),
    );

    // The forward pass, for each set of matched passages.
    for (case, knowledge) in &inputs.knowledge {
        let text = TextBatch {
            ids: ids.clone(),
            knowledge: knowledge.clone(),
        };
        model.check_inputs(&images, &text).expect("inputs");
        let out = model.forward(images.clone(), &text);
        check(
            format!("{case}.logits"),
            host(out.logits),
            want(&format!("{case}.logits")),
        );
        assert_eq!(out.sim_maps.len(), inputs.vlcm_scales.len());
        for (sim, scale) in out.sim_maps.into_iter().zip(&inputs.vlcm_scales) {
            let key = format!("{case}.sim{scale}");
            check(key.clone(), host(sim), want(&key));
        }
    }

    // The variant: same checkpoint, other activation, trainable text tower.
    let mut vcfg = cfg.clone();
    vcfg.clip.model.activation = inputs.variant.activation;
    vcfg.clip.freeze_text = inputs.variant.freeze_text;
    let variant = TgcNet::new_with(&vcfg, &CaptionEncoder::new(&vcfg).expect("encoder"), &dev)
        .expect("variant")
        .load_params_file(&params)
        .expect("load variant");
    let text = TextBatch {
        ids,
        knowledge: inputs.knowledge["both"].clone(),
    };
    let out = variant.forward(images, &text);
    check(
        "variant.logits".into(),
        host(out.logits),
        want("variant.logits"),
    );
    for (sim, scale) in out.sim_maps.into_iter().zip(&inputs.vlcm_scales) {
        let key = format!("variant.sim{scale}");
        check(key.clone(), host(sim), want(&key));
    }

    for (name, err) in &report {
        println!("{name:<16} max |rust - pytorch| = {err:.3e}");
    }
    let worst = report
        .iter()
        .filter(|(_, e)| *e > TOL)
        .map(|(n, e)| format!("{n} ({e:.3e})"))
        .collect::<Vec<_>>();
    assert!(worst.is_empty(), "above {TOL:e}: {}", worst.join(", "));
}
