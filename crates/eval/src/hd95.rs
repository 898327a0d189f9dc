//! 95th-percentile symmetric Hausdorff distance between mask boundaries, in pixels (as medpy's `hd95`):
//! the larger of the two directed 95th percentiles of boundary-to-boundary distances.

/// Boundary pixels: foreground pixels with a 4-neighbour in the background (or on the image border).
fn boundary(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let mut b = vec![false; w * h];
    for y in 0..h {
        for x in 0..w {
            if !mask[y * w + x] {
                continue;
            }
            let edge = x == 0
                || y == 0
                || x + 1 == w
                || y + 1 == h
                || !mask[y * w + x - 1]
                || !mask[y * w + x + 1]
                || !mask[(y - 1) * w + x]
                || !mask[(y + 1) * w + x];
            b[y * w + x] = edge;
        }
    }
    b
}

/// 1-D squared distance transform (Felzenszwalb & Huttenlocher, 2012).
fn dt1(f: &[f64], out: &mut [f64], v: &mut [usize], z: &mut [f64]) {
    let n = f.len();
    let mut k = 0usize;
    v[0] = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        if f[q].is_infinite() && f[v[k]].is_infinite() {
            continue;
        }
        loop {
            let p = v[k];
            let s = ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64))
                / (2.0 * q as f64 - 2.0 * p as f64);
            if s <= z[k] && k > 0 {
                k -= 1;
                continue;
            }
            if s <= z[k] {
                // k == 0: replace the first parabola.
                v[0] = q;
                z[0] = f64::NEG_INFINITY;
                z[1] = f64::INFINITY;
                break;
            }
            k += 1;
            v[k] = q;
            z[k] = s;
            z[k + 1] = f64::INFINITY;
            break;
        }
    }
    let mut k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        let d = q as f64 - p as f64;
        *o = d * d + f[p];
    }
}

/// Exact Euclidean distance from every pixel to the nearest `true` pixel of `seeds`.
fn distance_to(seeds: &[bool], w: usize, h: usize) -> Vec<f64> {
    let mut g: Vec<f64> = seeds
        .iter()
        .map(|&s| if s { 0.0 } else { f64::INFINITY })
        .collect();
    let n = w.max(h);
    let (mut f, mut out, mut v, mut z) = (
        vec![0.0; n],
        vec![0.0; n],
        vec![0usize; n],
        vec![0.0; n + 1],
    );
    for x in 0..w {
        for y in 0..h {
            f[y] = g[y * w + x];
        }
        dt1(&f[..h], &mut out[..h], &mut v, &mut z);
        for y in 0..h {
            g[y * w + x] = out[y];
        }
    }
    for y in 0..h {
        f[..w].copy_from_slice(&g[y * w..(y + 1) * w]);
        dt1(&f[..w], &mut out[..w], &mut v, &mut z);
        g[y * w..(y + 1) * w].copy_from_slice(&out[..w]);
    }
    g.into_iter().map(f64::sqrt).collect()
}

fn percentile95(mut d: Vec<f64>) -> f64 {
    d.sort_by(|a, b| a.total_cmp(b));
    // numpy's default linear interpolation, as medpy uses.
    let pos = 0.95 * (d.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    d[lo] + (d[hi] - d[lo]) * (pos - lo as f64)
}

/// HD95 in pixels between two row-major masks of size w×h; `None` when either mask is empty.
pub fn hd95(pred: &[bool], target: &[bool], w: usize, h: usize) -> Option<f64> {
    let bp = boundary(pred, w, h);
    let bt = boundary(target, w, h);
    if !bp.iter().any(|&b| b) || !bt.iter().any(|&b| b) {
        return None;
    }
    let dt_t = distance_to(&bt, w, h);
    let dt_p = distance_to(&bp, w, h);
    let a: Vec<f64> = (0..w * h).filter(|&i| bp[i]).map(|i| dt_t[i]).collect();
    let b: Vec<f64> = (0..w * h).filter(|&i| bt[i]).map(|i| dt_p[i]).collect();
    Some(percentile95(a).max(percentile95(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(w: usize, x0: usize, y0: usize, s: usize) -> Vec<bool> {
        let mut m = vec![false; w * w];
        for y in y0..y0 + s {
            for x in x0..x0 + s {
                m[y * w + x] = true;
            }
        }
        m
    }

    #[test]
    fn identical_masks_have_zero_distance() {
        let m = square(16, 3, 4, 5);
        assert_eq!(hd95(&m, &m, 16, 16), Some(0.0));
    }

    #[test]
    fn shifted_square_distance_matches_brute_force() {
        let a = square(20, 2, 2, 6);
        let b = square(20, 9, 5, 6);
        let got = hd95(&a, &b, 20, 20).expect("defined");
        // Brute force over boundary pixels.
        let (ba, bb) = (boundary(&a, 20, 20), boundary(&b, 20, 20));
        let pts = |m: &[bool]| -> Vec<(f64, f64)> {
            (0..400)
                .filter(|&i| m[i])
                .map(|i| ((i % 20) as f64, (i / 20) as f64))
                .collect()
        };
        let (pa, pb) = (pts(&ba), pts(&bb));
        let directed = |from: &[(f64, f64)], to: &[(f64, f64)]| {
            percentile95(
                from.iter()
                    .map(|p| {
                        to.iter()
                            .map(|q| ((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt())
                            .fold(f64::INFINITY, f64::min)
                    })
                    .collect(),
            )
        };
        let want = directed(&pa, &pb).max(directed(&pb, &pa));
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }

    #[test]
    fn empty_mask_is_undefined() {
        let m = square(8, 1, 1, 3);
        assert_eq!(hd95(&m, &[false; 64], 8, 8), None);
    }
}
