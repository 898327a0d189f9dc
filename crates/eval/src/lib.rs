//! tgcnet eval
