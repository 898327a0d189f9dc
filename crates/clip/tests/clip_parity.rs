//! Parity with PyTorch (HF transformers and OpenCLIP) on tiny random CLIP models written by
//! scripts/fixtures/make_clip_fixture.py. Tolerance: 1e-4 absolute.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use tgcnet_clip::image::{load_batch, normalize, read_rgb, resize_center_crop};
use tgcnet_clip::model::load_clip;
use tgcnet_clip::weights::{HostTensor, TensorMap};

const TOL: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip")
}

fn expected() -> TensorMap {
    TensorMap::read_safetensors(&fixtures().join("expected.safetensors"))
        .expect("expected.safetensors")
}

fn get<'a>(m: &'a TensorMap, k: &str) -> &'a HostTensor {
    m.tensors
        .get(k)
        .unwrap_or_else(|| panic!("fixture has no {k}"))
}

fn tensor<const D: usize>(t: &HostTensor, dev: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(t.data.clone(), t.shape.clone()), dev)
}

fn ids(m: &TensorMap, dev: &Device) -> Tensor<2, Int> {
    let t = get(m, "token_ids");
    let v: Vec<i64> = t.data.iter().map(|x| *x as i64).collect();
    Tensor::from_data(TensorData::new(v, t.shape.clone()), dev)
}

/// Largest absolute difference; panics above the tolerance.
fn assert_close<const D: usize>(got: Tensor<D>, want: &HostTensor, what: &str) -> f32 {
    assert_eq!(got.dims().to_vec(), want.shape, "{what}: shape");
    let got = got.into_data().try_into_vec::<f32>().expect("f32");
    let err = got
        .iter()
        .zip(&want.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("{what}: max abs err {err:.2e}");
    assert!(err < TOL, "{what}: max abs error {err} above {TOL}");
    err
}

#[test]
fn hf_layout_matches_transformers() {
    let dev = Device::flex();
    let exp = expected();
    let (clip, cfg) = load_clip(&fixtures().join("hf"), None, &dev).expect("load HF");
    assert_eq!(cfg.vision.layers, 3);
    let pix = tensor::<4>(get(&exp, "hf.pixel_values"), &dev);
    let vo = clip.vision_model.forward(pix.clone(), &[1, 3], None);
    assert_close(
        vo.taps[0].clone(),
        get(&exp, "hf.vision_hidden_1"),
        "hf vision hidden_states[1]",
    );
    assert_close(
        vo.taps[1].clone(),
        get(&exp, "hf.vision_hidden_3"),
        "hf vision hidden_states[3]",
    );
    assert_close(vo.pooled, get(&exp, "hf.vision_pooled"), "hf vision pooled");
    assert_close(
        clip.image_embeds(pix),
        get(&exp, "hf.image_embeds"),
        "hf image_embeds",
    );

    let to = clip.text_model.forward(ids(&exp, &dev), None);
    assert_close(
        to.tokens,
        get(&exp, "hf.text_last_hidden"),
        "hf text last_hidden_state",
    );
    assert_close(to.pooled, get(&exp, "hf.text_pooled"), "hf text pooled");
    assert_close(
        clip.text_embeds(ids(&exp, &dev)),
        get(&exp, "hf.text_embeds"),
        "hf text_embeds",
    );
}

#[test]
fn positional_embeddings_are_interpolated_like_hf() {
    let dev = Device::flex();
    let exp = expected();
    let (clip, _) = load_clip(&fixtures().join("hf"), None, &dev).expect("load HF");
    let pix = tensor::<4>(get(&exp, "hf.pixels_48"), &dev);
    assert_close(
        clip.image_embeds(pix),
        get(&exp, "hf.image_embeds_48"),
        "hf image_embeds at 48px",
    );
}

#[test]
fn open_clip_layout_matches_open_clip() {
    let dev = Device::flex();
    let exp = expected();
    let (clip, cfg) = load_clip(&fixtures().join("openclip/tiny.safetensors"), None, &dev)
        .expect("load OpenCLIP");
    assert_eq!(cfg.activation, tgcnet_clip::Activation::Gelu);
    let pix = tensor::<4>(get(&exp, "hf.pixel_values"), &dev);
    assert_close(
        clip.image_embeds(pix),
        get(&exp, "openclip.image_embeds"),
        "openclip image_embeds",
    );
    assert_close(
        clip.text_embeds(ids(&exp, &dev)),
        get(&exp, "openclip.text_embeds"),
        "openclip text_embeds",
    );
}

#[test]
fn preprocessing_matches_hf_clip_image_processor() {
    let dev = Device::flex();
    let exp = expected();
    let names = ["gray32.png", "rgb32.png", "rgb60x45.png"];
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|n| fixtures().join("images").join(n))
        .collect();
    let want = get(&exp, "hf.pixel_values");
    let per = 3 * 32 * 32;
    // Same-size images need no resampling: exact.
    let got = load_batch(&paths[..2], 32, &dev)
        .expect("load")
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32");
    let err = got
        .iter()
        .zip(&want.data[..2 * per])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-5, "exact-size preprocessing differs by {err}");
    // Resized image: our resampler reproduces PIL's fixed-point bicubic, so this is exact too.
    let img = resize_center_crop(&read_rgb(&paths[2]).expect("read"), 32);
    let got = normalize(&img);
    let err = got
        .iter()
        .zip(&want.data[2 * per..])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("resized preprocessing: max abs err {err:.3e}");
    assert!(err < 1e-5, "resized preprocessing differs by {err}");
}
