//! tgcnet model
