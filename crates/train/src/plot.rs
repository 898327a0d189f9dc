//! Line charts as self-contained SVG: a title, axes with ticks and tick labels, axis labels, a grid and
//! a legend. SVG needs no font files (the viewer draws the text), opens in every browser, and inlines
//! into an HTML report as it is. Training writes `curves.svg` (loss and validation Dice per epoch).

use std::fmt::Write;
use std::path::Path;

use crate::error::Result;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// A CSS colour.
    pub color: String,
    /// (x, y) points; non-finite values are skipped.
    pub points: Vec<(f64, f64)>,
    /// Draw the line dashed.
    pub dashed: bool,
}

impl Series {
    /// A solid line.
    pub fn new(name: &str, color: &str, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            color: color.into(),
            points,
            dashed: false,
        }
    }

    /// The same line, dashed.
    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
}

/// A chart's text and range.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Fixed y range (default: the data's, padded).
    pub y_range: Option<(f64, f64)>,
    /// Integer ticks on x (epochs).
    pub integer_x: bool,
}

const W: f64 = 560.0;
const H: f64 = 340.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 52.0;

/// About `n` "nice" tick values (1, 2, 5 × 10^k steps) covering [lo, hi].
fn ticks(lo: f64, hi: f64, n: usize, integer: bool) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    // The 1-2-5 step whose tick count is nearest to n.
    let mut step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .min_by(|a, b| {
            let miss = |s: f64| (span / s - n as f64).abs();
            miss(*a).total_cmp(&miss(*b))
        })
        .unwrap_or(mag);
    if integer {
        step = step.max(1.0).round();
    }
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|v| *v <= hi + step * 1e-9)
        .collect()
}

/// A tick label with as many decimals as the tick step needs (so that neighbouring ticks differ).
fn label(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

/// Decimals that tell apart ticks spaced like `ticks` (0 for steps of 1 or more).
fn decimals(ticks: &[f64]) -> usize {
    match ticks {
        [a, b, ..] if b > a => (-(b - a).log10() - 1e-9).ceil().clamp(0.0, 6.0) as usize,
        [v] if *v != v.round() => 2,
        _ => 0,
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart as an SVG document (`<svg>` element with its own size).
pub fn svg_chart(chart: &Chart, series: &[Series]) -> String {
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied().filter(finite))
        .collect();
    let (mut x0, mut x1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    if all.is_empty() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        (x0, x1) = (x0 - 0.5, x0 + 0.5);
    }
    let (y0, y1) = chart.y_range.unwrap_or_else(|| {
        let (lo, hi) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        if all.is_empty() {
            (0.0, 1.0)
        } else {
            let pad = ((hi - lo) * 0.08).max(1e-3);
            (lo - pad, hi + pad)
        }
    });
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif" font-size="12"><rect width="{W}" height="{H}" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        W / 2.0,
        escape(&chart.title)
    );
    let y_ticks = ticks(y0, y1, 5, false);
    let y_decimals = decimals(&y_ticks);
    for t in y_ticks {
        let y = sy(t);
        let _ = write!(
            o,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="black"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 5.0,
            LEFT - 8.0,
            y + 4.0,
            label(t, y_decimals)
        );
    }
    let x_ticks = ticks(x0, x1, 8, chart.integer_x);
    let x_decimals = decimals(&x_ticks);
    for t in x_ticks {
        let x = sx(t);
        let _ = write!(
            o,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#f0f0f0"/><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph,
            TOP + ph + 5.0,
            TOP + ph + 19.0,
            label(t, x_decimals)
        );
    }
    let _ = write!(
        o,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 10.0,
        escape(&chart.x_label),
        TOP + ph / 2.0,
        escape(&chart.y_label)
    );
    let mut drawn = Vec::new();
    for s in series {
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(finite)
            .map(|(x, y)| (sx(x), sy(y.clamp(y0, y1))))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let joined: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = write!(
            o,
            r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            escape(&s.color),
            joined.join(" ")
        );
        for (x, y) in &pts {
            let _ = write!(
                o,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{}"/>"#,
                escape(&s.color)
            );
        }
        // The line sampled along each segment, for the legend's placement.
        drawn.extend(pts.iter().copied());
        for w in pts.windows(2) {
            // A point every 4 px or so.
            let n = ((w[1].0 - w[0].0).hypot(w[1].1 - w[0].1) / 4.0)
                .ceil()
                .max(1.0) as usize;
            drawn.extend((1..n).map(|t| {
                let f = t as f64 / n as f64;
                (
                    w[0].0 + f * (w[1].0 - w[0].0),
                    w[0].1 + f * (w[1].1 - w[0].1),
                )
            }));
        }
    }
    legend(&mut o, series, &drawn, (pw, ph));
    o.push_str("</svg>\n");
    o
}

/// The legend inside the plot area (`pw` x `ph`), in the corner whose box covers the fewest of the
/// `drawn` screen points, so that it hides as little of the lines as it can.
fn legend(o: &mut String, series: &[Series], drawn: &[(f64, f64)], (pw, ph): (f64, f64)) {
    let longest = series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let lw = 44.0 + 7.0 * longest as f64;
    let lh = 8.0 + 18.0 * series.len() as f64;
    let (right, left) = (LEFT + pw - lw - 8.0, LEFT + 8.0);
    let (top, bottom, middle) = (TOP + 8.0, TOP + ph - lh - 8.0, TOP + (ph - lh) / 2.0);
    let covered = |&(x, y): &(f64, f64)| {
        drawn
            .iter()
            .filter(|p| {
                p.0 >= x - 4.0 && p.0 <= x + lw + 4.0 && p.1 >= y - 4.0 && p.1 <= y + lh + 4.0
            })
            .count()
    };
    // Corners first; the middle of either side when every corner hides a line (curves that hug the
    // top and the bottom of an auto-scaled axis).
    let (lx, ly) = [
        (right, top),
        (left, top),
        (right, bottom),
        (left, bottom),
        (right, middle),
        (left, middle),
    ]
    .into_iter()
    .min_by_key(covered)
    .unwrap_or((right, top));
    let _ = write!(
        o,
        r##"<rect x="{lx:.1}" y="{ly:.1}" width="{lw:.1}" height="{lh:.1}" fill="white" fill-opacity="0.9" stroke="#999"/>"##
    );
    for (i, s) in series.iter().enumerate() {
        let y = ly + 14.0 + 18.0 * i as f64;
        let dash = if s.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            o,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 8.0,
            y - 4.0,
            lx + 30.0,
            y - 4.0,
            escape(&s.color),
            lx + 36.0,
            y,
            escape(&s.name)
        );
    }
}

/// `curves.svg` of a run: training loss, and validation Dice (per-image and global) in %, per epoch.
pub fn write_curves(
    path: &Path,
    loss: &[f64],
    dice_per_image: &[f64],
    dice_global: &[f64],
) -> Result<()> {
    let epochs = |v: &[f64], scale: f64| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(i, y)| ((i + 1) as f64, y * scale))
            .collect()
    };
    let loss_chart = svg_chart(
        &Chart {
            title: "Training loss".into(),
            x_label: "epoch".into(),
            y_label: "mean loss (Dice + BCE + similarity-map BCE)".into(),
            integer_x: true,
            ..Chart::default()
        },
        &[Series::new("train loss", "#1f77b4", epochs(loss, 1.0))],
    );
    let dice_chart = svg_chart(
        &Chart {
            title: "Validation Dice".into(),
            x_label: "epoch".into(),
            y_label: "Dice (%)".into(),
            integer_x: true,
            ..Chart::default()
        },
        &[
            Series::new("per-image", "#d62728", epochs(dice_per_image, 100.0)),
            Series::new("global", "#2ca02c", epochs(dice_global, 100.0)).dashed(),
        ],
    );
    tgcnet_io::write_atomic(path, side_by_side(&loss_chart, &dice_chart).as_bytes())?;
    Ok(())
}

/// Two charts of [`svg_chart`] side by side in one SVG document.
pub fn side_by_side(left: &str, right: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{H}"><g>{left}</g><g transform="translate({W} 0)">{right}</g></svg>
"#,
        2.0 * W
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let labels = |t: Vec<f64>| -> Vec<String> {
            let d = decimals(&t);
            t.into_iter().map(|v| label(v, d)).collect()
        };
        assert_eq!(
            labels(ticks(0.0, 1.0, 5, false)),
            ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
        );
        // A narrow loss range (0.1507-0.1642): every tick its own label.
        assert_eq!(
            labels(ticks(0.1507, 0.1642, 5, false)),
            [
                "0.152", "0.154", "0.156", "0.158", "0.160", "0.162", "0.164"
            ]
        );
        assert_eq!(
            labels(ticks(78.0, 88.0, 5, false)),
            ["78", "80", "82", "84", "86", "88"]
        );
        assert_eq!(
            ticks(1.0, 8.0, 8, true),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        );
        assert_eq!(ticks(1.0, 2.0, 8, true), [1.0, 2.0]);
        let t = ticks(52.3, 87.9, 5, false);
        assert!(t.first().is_some_and(|v| *v >= 52.3) && t.last().is_some_and(|v| *v <= 87.9));
        assert!(t.len() >= 3, "{t:?}");
    }

    #[test]
    fn chart_has_title_axes_labels_and_legend() {
        let svg = svg_chart(
            &Chart {
                title: "T <1>".into(),
                x_label: "epoch".into(),
                y_label: "Dice (%)".into(),
                integer_x: true,
                ..Chart::default()
            },
            &[
                Series::new(
                    "full",
                    "red",
                    vec![(1.0, 50.0), (2.0, 70.0), (3.0, f64::NAN)],
                ),
                Series::new("text off", "blue", vec![(1.0, 40.0), (2.0, 45.0)]).dashed(),
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        for text in [
            "T &lt;1&gt;",
            ">epoch<",
            ">Dice (%)<",
            ">full<",
            ">text off<",
            ">1<",
            ">2<",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        assert_eq!(svg.matches("<polyline").count(), 2);
        // The NaN point is skipped: two points for each series.
        assert_eq!(svg.matches("<circle").count(), 4);
    }

    /// The legend's box: (x, y) of its `<rect>` (the only rect with a grey stroke).
    fn legend_xy(svg: &str) -> (f64, f64) {
        let rect = svg
            .split("<rect ")
            .find(|r| r.contains("stroke=\"#999\""))
            .expect("legend box");
        let attr = |name: &str| -> f64 {
            let v = rect.split(&format!("{name}=\"")).nth(1).expect("attribute");
            v.split('"')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("number")
        };
        (attr("x"), attr("y"))
    }

    #[test]
    fn legend_moves_off_the_lines() {
        let chart = Chart::default();
        // A rising line fills the top right: the legend goes to the top left.
        let rising = svg_chart(
            &chart,
            &[Series::new("a", "red", vec![(0.0, 0.0), (1.0, 1.0)])],
        );
        let (x, y) = legend_xy(&rising);
        assert!(x < W / 2.0 && y < H / 2.0, "({x}, {y})");
        // A flat line along the top: the legend goes to the bottom.
        let top = Chart {
            y_range: Some((0.0, 1.0)),
            ..Chart::default()
        };
        let flat = svg_chart(
            &top,
            &[Series::new("a", "red", vec![(0.0, 0.95), (2.0, 0.95)])],
        );
        let (_, y) = legend_xy(&flat);
        assert!(y > H / 2.0, "{y}");
        // Lines along the top and the bottom: the legend sits between them.
        let both = svg_chart(
            &top,
            &[
                Series::new("a", "red", vec![(0.0, 0.95), (2.0, 0.97)]),
                Series::new("b", "blue", vec![(0.0, 0.05), (2.0, 0.04)]),
            ],
        );
        let (_, y) = legend_xy(&both);
        assert!(y > H * 0.3 && y < H * 0.6, "{y}");
    }
}
