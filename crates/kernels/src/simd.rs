//! Vector code without a `target-cpu` flag: the release binary must run on any x86-64 (the project's
//! rule), so the crate is compiled for SSE2 and a plain loop gets 4-lane vectors. [`dispatch`] runs a
//! kernel body compiled again for AVX-512 or AVX2 + FMA when the CPU has them, chosen at run time, as
//! gemm does for its microkernels; and [`exp`] is an exponential the compiler can vectorise (libm's `expf`
//! is a call per element: the softmax of the small preset's ViT evaluates 0.7 M of them per image).

/// Runs `f`, compiled for the widest vector extension the CPU has. `f` must be an `#[inline(always)]`
/// closure (or call only `#[inline(always)]` functions) for its body to be compiled inside the
/// feature-enabled function; otherwise this is a plain call.
#[inline(always)]
pub(crate) fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features `v4` is compiled for (avx512f implies the others here).
            return unsafe { v4(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above, for `v3`.
            return unsafe { v3(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,avx,fma,sse4.1,sse4.2")]
unsafe fn v4<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx,fma,sse4.1,sse4.2")]
unsafe fn v3<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// eˣ for x ≤ 0 and moderate positive x (|x| < 88), within 2 ulp; −∞ and anything below −87.3 give 0.
/// Cephes' `expf`: x = n·ln 2 + r with |r| ≤ ln2/2, eʳ by a degree-6 polynomial, 2ⁿ through the exponent
/// bits. Rounding to n uses the 1.5·2²³ trick instead of `floor` (a libm call without SSE4.1).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³
    let underflow = x < -87.3;
    let xc = x.clamp(-87.3, 88.3);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    // The low mantissa bits of t hold n as an integer (t is in [2²³, 2²⁴)).
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let scale = f32::from_bits(((ni + 127) << 23) as u32);
    if underflow { 0.0 } else { er * scale }
}

/// Lanes of the reductions below: a plain `acc += x` loop is one dependency chain that the compiler may
/// not reorder, so sums run in 16 independent lanes (one AVX-512 register) and are added at the end.
const L: usize = 16;

/// Σᵢ f(xᵢ), in lanes.
#[inline(always)]
pub(crate) fn sum1(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; L];
    let c = x.chunks_exact(L);
    let tail: f32 = c.remainder().iter().map(|&v| f(v)).sum();
    for v in c {
        for l in 0..L {
            lanes[l] += f(v[l]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Σᵢ f(aᵢ, bᵢ) over two equally long slices, in lanes.
#[inline(always)]
pub(crate) fn sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..L {
            lanes[l] += f(x[l], y[l]);
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(&x, &y)| f(x, y)).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Σᵢ f(aᵢ, bᵢ, cᵢ) over three equally long slices, in lanes.
#[inline(always)]
pub(crate) fn sum3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; L];
    let (ca, cb, cc) = (a.chunks_exact(L), b.chunks_exact(L), c.chunks_exact(L));
    let (ra, rb, rc) = (ca.remainder(), cb.remainder(), cc.remainder());
    for ((x, y), z) in ca.zip(cb).zip(cc) {
        for l in 0..L {
            lanes[l] += f(x[l], y[l], z[l]);
        }
    }
    let tail: f32 = ra
        .iter()
        .zip(rb)
        .zip(rc)
        .map(|((&x, &y), &z)| f(x, y, z))
        .sum();
    lanes.iter().sum::<f32>() + tail
}

/// Σᵢ f(xᵢ) in f64 lanes (for groups of up to ~10⁵ elements, where f32 sums lose digits).
#[inline(always)]
pub(crate) fn sum_f64(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    const L64: usize = 8;
    let mut lanes = [0.0f64; L64];
    let c = x.chunks_exact(L64);
    let tail: f64 = c.remainder().iter().map(|&v| f(v)).sum();
    for v in c {
        for l in 0..L64 {
            lanes[l] += f(v[l]);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_f64_exp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            let ulp = (want as f32).to_bits().abs_diff((got as f32).to_bits());
            worst = worst.max(ulp as f64);
            assert!(ulp <= 2, "exp({x}) = {got}, want {want} ({ulp} ulp)");
            x += 0.001_3;
        }
        assert!(worst <= 2.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn lane_sums_match_plain_sums() {
        let a: Vec<f32> = (0..1037)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01)
            .collect();
        let b: Vec<f32> = (0..1037)
            .map(|i| ((i * 13 % 89) as f32 - 44.0) * 0.02)
            .collect();
        let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let got = dispatch(
            #[inline(always)]
            || sum2(&a, &b, |x, y| x * y),
        );
        assert!((got as f64 - want).abs() < 1e-4, "{got} vs {want}");
        let want: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum();
        let got = sum_f64(&a, |x| (x as f64).powi(2));
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        assert_eq!(sum2(&[], &[], |x, y| x + y), 0.0);
    }

    #[test]
    fn dispatch_runs_the_body() {
        let v: Vec<f32> = (0..100).map(|i| -(i as f32) * 0.1).collect();
        let s = dispatch(
            #[inline(always)]
            || v.iter().map(|&x| exp(x)).sum::<f32>(),
        );
        let want: f32 = v.iter().map(|&x| x.exp()).sum();
        assert!((s - want).abs() < 1e-5);
    }
}
