//! Running a whole computation on rayon's pool.
//!
//! burn-flex, gemm and our kernels parallelise each op with rayon. Called from a thread outside the pool
//! (a program's main thread), every parallel op is handed to the pool and the caller sleeps on a futex
//! until it is done: one wake-up per op, thousands per forward pass, and on a machine with as many
//! cores as pool threads the caller and the workers compete for them. Called from a pool thread, the
//! same op splits its work in place and the caller is one of the workers, as in PyTorch's OpenMP model.
//! Measured on the small preset (2 cores, `tgcnet bench`, alternated): inference latency 40 → 29 ms, a
//! training step 450-550 → 320-370 ms.

/// Stack of the pool threads: the main thread's usual 8 MiB rather than rayon's 2 MiB, since the whole
/// program now runs on one of them.
const STACK_BYTES: usize = 8 << 20;

/// Runs `f` on a thread of rayon's global pool (building the pool first, with the default number of
/// threads: `RAYON_NUM_THREADS`, else the cores) and returns its result; the calling thread waits.
///
/// `f` may block (a channel, a file) without deadlocking the pool as long as what it waits for does
/// not itself need a thread of the global pool (the data loader decodes on a pool of its own).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    // An error means the global pool exists already (built by an earlier call or by rayon itself on
    // first use); it is used as it is.
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(STACK_BYTES)
        .thread_name(|i| format!("tgcnet-{i}"))
        .build_global();
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| f())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_a_pool_thread_and_returns_its_result() {
        let (inside, sum) = on_pool(|| {
            let inside = rayon::current_thread_index().is_some();
            // Parallel work from inside, and a nested call, still complete.
            let sum: u64 = on_pool(|| {
                use rayon::prelude::*;
                (1..=1000u64).into_par_iter().sum()
            });
            (inside, sum)
        });
        assert!(inside);
        assert_eq!(sum, 500_500);
    }
}
