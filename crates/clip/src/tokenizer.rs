//! OpenAI CLIP's BPE tokenizer (`simple_tokenizer.py`). Placeholder API; the implementation lands next.

use crate::error::Result;

pub const START_TOKEN: u32 = 49406;
pub const END_TOKEN: u32 = 49407;

pub struct Tokenizer;

impl Tokenizer {
    pub fn new() -> Result<Self> {
        Ok(Tokenizer)
    }
}
