//! tgcnet data
