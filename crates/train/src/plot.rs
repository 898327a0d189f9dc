//! Loss and Dice curves as a PNG (no fonts needed: two panels, axes, one colour per series).

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::error::{Result, TrainError};

const W: u32 = 800;
const H: u32 = 300;

fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        for (ox, oy) in [(0, 0), (0, 1), (1, 0)] {
            let (px, py) = (x + ox, y + oy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, c);
            }
        }
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// Draws series into a panel spanning x ∈ [x_off, x_off + w); y range from the data (or fixed).
fn panel(
    img: &mut RgbImage,
    x_off: u32,
    series: &[(&[f64], Rgb<u8>)],
    y_range: Option<(f64, f64)>,
) {
    let (pw, ph, m) = (W / 2 - 40, H - 40, 20i64);
    let axis = Rgb([90, 90, 90]);
    let x0 = x_off as i64 + m;
    line(img, (x0, m), (x0, m + ph as i64), axis);
    line(
        img,
        (x0, m + ph as i64),
        (x0 + pw as i64, m + ph as i64),
        axis,
    );
    let finite = series
        .iter()
        .flat_map(|(s, _)| s.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = y_range.unwrap_or_else(|| {
        finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        })
    });
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    for (s, c) in series {
        let n = s.len().max(2) - 1;
        let pt = |i: usize, v: f64| {
            (
                x0 + (i as f64 / n as f64 * pw as f64) as i64,
                m + ((1.0 - (v - lo) / (hi - lo)) * ph as f64) as i64,
            )
        };
        for i in 1..s.len() {
            if s[i - 1].is_finite() && s[i].is_finite() {
                line(img, pt(i - 1, s[i - 1]), pt(i, s[i]), *c);
            }
        }
        if s.len() == 1 && s[0].is_finite() {
            let p = pt(0, s[0]);
            line(img, p, (p.0 + 3, p.1), *c);
        }
    }
}

/// Left: training loss (blue) and validation loss (orange). Right: validation Dice per-image (green) and
/// global (red) on a fixed 0..1 axis.
pub fn draw_curves(
    path: &Path,
    train_loss: &[f64],
    val_loss: &[f64],
    dice_img: &[f64],
    dice_glob: &[f64],
) -> Result<()> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    panel(
        &mut img,
        0,
        &[
            (train_loss, Rgb([31, 119, 180])),
            (val_loss, Rgb([255, 127, 14])),
        ],
        None,
    );
    panel(
        &mut img,
        W / 2,
        &[
            (dice_img, Rgb([44, 160, 44])),
            (dice_glob, Rgb([214, 39, 40])),
        ],
        Some((0.0, 1.0)),
    );
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| TrainError::Other(format!("{}: encoding PNG: {e}", path.display())))?;
    tgcnet_clip::weights::write_atomic(path, &bytes)?;
    Ok(())
}
