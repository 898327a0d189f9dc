//! `report.html` of `tgcnet demo`: one self-contained page (pictures inlined as PNG data URLs, charts as
//! inline SVG): the results table, the training curves of both arms, and a grid of validation examples.

use std::fmt::Write;
use std::path::Path;

use base64::Engine;
use image::{GrayImage, Rgb, RgbImage, imageops};
use tgcnet_eval::Confusion;
use tgcnet_infer::Segmentation;
use tgcnet_train::evaluate::heatmap;
use tgcnet_train::plot::{Chart, Series, svg_chart};

use crate::demo_cmd::DemoResult;

/// One arm's training curves, read back from its run directory.
pub struct ArmCurves {
    pub name: String,
    /// (optimizer step, mean training loss since the previous point), from steps.jsonl.
    pub loss: Vec<(f64, f64)>,
    /// (epoch, validation Dice per-image in %), from metrics.jsonl.
    pub val_dice: Vec<(f64, f64)>,
    /// Training and validation time summed over the epochs.
    pub seconds: f64,
}

fn jsonl(path: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())))
        .collect()
}

impl ArmCurves {
    pub fn read(name: &str, run: &Path) -> anyhow::Result<Self> {
        let num = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let steps = jsonl(&run.join("steps.jsonl"))?;
        let epochs = jsonl(&run.join("metrics.jsonl"))?;
        Ok(Self {
            name: name.to_string(),
            loss: steps
                .iter()
                .map(|r| (num(r, "step"), num(r, "loss")))
                .collect(),
            val_dice: epochs
                .iter()
                .map(|r| (num(r, "epoch"), 100.0 * num(r, "val_dice_per_image")))
                .collect(),
            seconds: epochs.iter().map(|r| num(r, "epoch_seconds")).sum(),
        })
    }
}

/// One validation image: both arms with the true caption, the full model with the counterfactual one.
pub struct Example {
    pub id: String,
    pub picture: GrayImage,
    /// The mask of the lesions the image's own caption names, and of the ones it leaves out.
    pub truth: Vec<bool>,
    pub counterfactual_truth: Vec<bool>,
    pub full: Segmentation,
    pub text_off: Segmentation,
    pub counterfactual: Segmentation,
}

pub struct ReportInput<'a> {
    pub title: &'a str,
    pub summary_markdown: &'a str,
    pub result: &'a DemoResult,
    pub curves: Vec<&'a ArmCurves>,
    pub examples: &'a [Example],
}

const COLORS: [&str; 2] = ["#d62728", "#1f77b4"];
/// Pictures are shown at least this many pixels wide (small phantoms are upscaled, nearest-neighbour
/// for masks so that their edges stay the model's).
const MIN_SHOWN: u32 = 176;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn png_data_url(img: &RgbImage) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

fn upscaled(gray: &GrayImage, k: u32) -> GrayImage {
    imageops::resize(
        gray,
        gray.width() * k,
        gray.height() * k,
        imageops::FilterType::Triangle,
    )
}

/// The picture upscaled by `k` with the masks drawn: `fill` tinted, `outline` as a green edge.
fn panel(
    gray: &GrayImage,
    k: u32,
    fill: Option<(&[bool], [u8; 3])>,
    outline: Option<&[bool]>,
) -> RgbImage {
    let (w, h) = (gray.width(), gray.height());
    let big = upscaled(gray, k);
    let at = |m: &[bool], x: u32, y: u32| -> bool {
        x < w * k && y < h * k && m[((y / k) * w + x / k) as usize]
    };
    RgbImage::from_fn(w * k, h * k, |x, y| {
        let g = big.get_pixel(x, y).0[0] as f32;
        let mut px = [g, g, g];
        if let Some((m, c)) = fill
            && at(m, x, y)
        {
            px = [0, 1, 2].map(|i| 0.45 * g + 0.55 * c[i] as f32);
        }
        if let Some(m) = outline
            && at(m, x, y)
            && [(1i64, 0i64), (-1, 0), (0, 1), (0, -1)]
                .iter()
                .any(|(dx, dy)| {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    nx < 0 || ny < 0 || !at(m, nx as u32, ny as u32)
                })
        {
            px = [40.0, 230.0, 40.0];
        }
        Rgb(px.map(|v| v.clamp(0.0, 255.0) as u8))
    })
}

fn dice(s: &Segmentation, truth: &[bool]) -> f64 {
    Confusion::from_masks(&s.mask(0.5), truth).dice()
}

fn charts(curves: &[&ArmCurves]) -> String {
    let series = |f: fn(&ArmCurves) -> &Vec<(f64, f64)>| -> Vec<Series> {
        curves
            .iter()
            .enumerate()
            .map(|(i, c)| Series::new(&c.name, COLORS[i % 2], f(c).clone()))
            .collect()
    };
    let loss = svg_chart(
        &Chart {
            title: "Training loss".into(),
            x_label: "optimizer step".into(),
            y_label: "loss (mean over 1/20 epoch)".into(),
            integer_x: true,
            ..Chart::default()
        },
        &series(|c| &c.loss),
    );
    let dice = svg_chart(
        &Chart {
            title: "Validation Dice per image".into(),
            x_label: "epoch".into(),
            y_label: "Dice (%)".into(),
            y_range: Some((0.0, 100.0)),
            integer_x: true,
        },
        &series(|c| &c.val_dice),
    );
    format!("<div class=\"charts\">{loss}{dice}</div>")
}

fn example_rows(examples: &[Example]) -> anyhow::Result<String> {
    let mut html = String::new();
    for e in examples {
        let size = e.picture.width();
        let k = MIN_SHOWN.div_ceil(size).max(1);
        let red = [230, 30, 30];
        let g = &e.picture;
        let cells = [
            (panel(g, k, None, None), "image".to_string()),
            (
                panel(g, k, Some((&e.truth, [40, 200, 40])), None),
                "truth: the lesions the caption names".to_string(),
            ),
            (
                panel(g, k, Some((&e.full.mask(0.5), red)), Some(&e.truth)),
                format!("full model, Dice {}", fmt_dice(dice(&e.full, &e.truth))),
            ),
            (
                panel(g, k, Some((&e.text_off.mask(0.5), red)), Some(&e.truth)),
                format!("text off, Dice {}", fmt_dice(dice(&e.text_off, &e.truth))),
            ),
            (
                panel(
                    g,
                    k,
                    Some((&e.counterfactual.mask(0.5), red)),
                    Some(&e.counterfactual_truth),
                ),
                format!(
                    "full model, counterfactual caption: “{}” Dice {}",
                    escape(&e.counterfactual.caption),
                    fmt_dice(dice(&e.counterfactual, &e.counterfactual_truth))
                ),
            ),
            (
                match &e.full.similarity {
                    Some(sim) => heatmap(&upscaled(g, k), &stretch(&upscale(sim, size, k))),
                    None => panel(g, k, None, None),
                },
                "VLCM text-pixel similarity (full model, own caption)".to_string(),
            ),
        ];
        let _ = write!(
            html,
            "<tr><th colspan=\"6\" class=\"caption\">{} — “{}”</th></tr><tr>",
            escape(&e.id),
            escape(&e.full.caption)
        );
        for (img, label) in cells {
            let _ = write!(
                html,
                "<td><img src=\"{}\" width=\"{}\" alt=\"{}\"><div class=\"label\">{label}</div></td>",
                png_data_url(&img)?,
                img.width(),
                escape(&label)
            );
        }
        html.push_str("</tr>");
    }
    Ok(html)
}

fn fmt_dice(d: f64) -> String {
    format!("{:.0}%", 100.0 * d)
}

/// Values scaled to [0, 1] by the map's own minimum and maximum (σ(S) of a calibrated model spans a
/// narrow range away from the lesions; stretched, the map shows where the text points).
fn stretch(v: &[f32]) -> Vec<f32> {
    let (lo, hi) = v
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let span = (hi - lo).max(1e-6);
    v.iter().map(|x| (x - lo) / span).collect()
}

/// A [size²] map upscaled by k (nearest).
fn upscale(v: &[f32], size: u32, k: u32) -> Vec<f32> {
    let s = size * k;
    (0..s * s)
        .map(|i| {
            let (x, y) = (i % s / k, i / s / k);
            v[(y * size + x) as usize]
        })
        .collect()
}

/// Turns the few Markdown constructs of demo.md (headings, tables, bold, code, paragraphs) into HTML.
fn markdown_html(md: &str) -> String {
    let inline = |s: &str| {
        let mut out = String::new();
        let (mut bold, mut code) = (false, false);
        let mut rest = escape(s);
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("**") {
                out.push_str(if bold { "</b>" } else { "<b>" });
                bold = !bold;
                rest = r.to_string();
            } else if let Some(r) = rest.strip_prefix('`') {
                out.push_str(if code { "</code>" } else { "<code>" });
                code = !code;
                rest = r.to_string();
            } else {
                let c = rest.chars().next().unwrap_or(' ');
                out.push(c);
                rest = rest[c.len_utf8()..].to_string();
            }
        }
        out
    };
    let mut html = String::new();
    let mut in_table = false;
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with('|') {
            let cells: Vec<&str> = t.trim_matches('|').split('|').map(str::trim).collect();
            if cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
                continue;
            }
            let tag = if in_table { "td" } else { "th" };
            if !in_table {
                html.push_str("<table>");
                in_table = true;
            }
            html.push_str("<tr>");
            for c in cells {
                let _ = write!(html, "<{tag}>{}</{tag}>", inline(c));
            }
            html.push_str("</tr>");
            continue;
        }
        if in_table {
            html.push_str("</table>");
            in_table = false;
        }
        if t.is_empty() {
            continue;
        }
        if t.starts_with("# ") {
            // The page has its own title.
            continue;
        } else {
            let _ = write!(html, "<p>{}</p>", inline(t));
        }
    }
    if in_table {
        html.push_str("</table>");
    }
    html
}

pub fn write_report(path: &Path, input: &ReportInput<'_>) -> anyhow::Result<()> {
    let r = input.result;
    let mut html = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1260px; color: #222; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 18px; margin-top: 28px; }}
table {{ border-collapse: collapse; margin: 8px 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: center; font-size: 13px; }}
.examples td {{ vertical-align: top; width: 190px; }}
.examples th.caption {{ text-align: left; background: #f4f4f4; font-weight: normal; }}
.label {{ font-size: 12px; color: #444; margin-top: 2px; }}
.charts svg {{ margin-right: 12px; border: 1px solid #ddd; }}
.key span {{ display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 12px; }}
</style></head><body>
<h1>{title}</h1>
<p><b>Text gain: {gain:+.1} Dice points per image</b> (full {full:.1} % vs text off {off:.1} %);
counterfactual captions: <b>{cf:.1} %</b> (text off {cf_off:.1} %). Whole demo {secs:.0} s.</p>
"#,
        title = escape(input.title),
        gain = 100.0 * r.text_gain_dice_per_image,
        full = 100.0 * r.full.dice_per_image,
        off = 100.0 * r.text_off.dice_per_image,
        cf = 100.0 * r.counterfactual.dice_per_image,
        cf_off = 100.0 * r.counterfactual.text_off_dice_per_image,
        secs = r.seconds,
    );
    html.push_str(&markdown_html(input.summary_markdown));
    html.push_str("<h2>Training curves</h2>");
    html.push_str(&charts(&input.curves));
    html.push_str(
        "<p>The full arm's loss includes the similarity-map term (VLCM's text-pixel map against the mask), \
         which the text-off arm has no map for; the two losses are not on one scale. Validation runs at the \
         end of each epoch.</p>",
    );
    html.push_str(
        "<h2>Validation examples</h2><p class=\"key\">Red: the model's mask. <span style=\"background:#28e628\"></span>\
         Green: the truth (filled in the truth column, outlined elsewhere). The counterfactual column gives the model \
         a caption naming the lesions that the image's own caption leaves out; a model that reads the caption \
         marks those instead. The heatmap is VLCM's similarity of each pixel with the sentence (blue low, red high; each map stretched to its own range).</p>\
         <table class=\"examples\">",
    );
    html.push_str(&example_rows(input.examples)?);
    html.push_str("</table></body></html>\n");
    tgcnet_io::write_atomic(path, html.as_bytes())?;
    Ok(())
}
