//! tgcnet train
