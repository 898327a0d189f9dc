//! The text side of TGC-Net's input: captions become CLIP BPE ids (padded to the batch's longest) and the
//! indices of the knowledge passages DATE attends to ([`TextBatch`]); [`CaptionEncoder`] holds the
//! tokenizer and the config's knowledge base so that both are built once.

use burn::tensor::{Device, Int, Tensor, TensorData};
use tgcnet_clip::Tokenizer;

use crate::config::TgcNetConfig;
use crate::error::{ModelError, Result};
use crate::knowledge::KnowledgeBase;

/// The text side of a batch.
#[derive(Debug, Clone)]
pub struct TextBatch {
    /// CLIP BPE ids, start and end tokens included, 0-padded: [B, L] (L ≤ the context length, 77).
    pub ids: Tensor<2, Int>,
    /// Indices of the knowledge passages matched in each report (empty: no knowledge for that report).
    pub knowledge: Vec<Vec<usize>>,
}

impl TextBatch {
    /// Tokenises captions (0-padded to the longest, at most `context_length` ids) and, given a knowledge
    /// base, matches their terms.
    pub fn from_captions(
        captions: &[&str],
        tokenizer: &Tokenizer,
        knowledge: Option<&KnowledgeBase>,
        context_length: usize,
        device: &Device,
    ) -> Result<Self> {
        let ids = token_ids(tokenizer, captions, context_length, device)?;
        let knowledge = captions
            .iter()
            .map(|c| knowledge.map(|k| k.match_report(c)).unwrap_or_default())
            .collect();
        Ok(Self { ids, knowledge })
    }
}

/// Token ids [N, L] of `texts`, padded with zeros to the longest of them (L ≤ `context_length`), not
/// to the full context: the text tower is causal and every later use of its tokens masks what follows
/// the end token, so the padding changes no result and costs a third of the text tower at 77 tokens.
pub(crate) fn token_ids(
    tokenizer: &Tokenizer,
    texts: &[&str],
    context_length: usize,
    device: &Device,
) -> Result<Tensor<2, Int>> {
    let rows = tokenizer.tokenize_padded(texts, context_length)?;
    let len = rows
        .iter()
        .map(|r| r.iter().rposition(|&id| id != 0).map_or(1, |i| i + 1))
        .max()
        .unwrap_or(1);
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|r| r[..len].iter().map(|&id| i64::from(id)))
        .collect();
    Ok(Tensor::from_data(
        TensorData::new(ids, [texts.len(), len]),
        device,
    ))
}

/// Turns captions into [`TextBatch`]es for a given config: the CLIP tokenizer and the config's knowledge
/// base (none when text or knowledge is off).
#[derive(Debug)]
pub struct CaptionEncoder {
    /// The CLIP BPE tokenizer.
    pub tokenizer: Tokenizer,
    /// The knowledge base whose passages are matched in each caption.
    pub knowledge: Option<KnowledgeBase>,
    /// Token sequences longer than this are truncated (the text tower's position table).
    pub context_length: usize,
}

impl CaptionEncoder {
    /// The encoder for `cfg`: its knowledge base (if text and knowledge are on) is loaded here.
    pub fn new(cfg: &TgcNetConfig) -> Result<Self> {
        let knowledge = if cfg.text && cfg.date.knowledge {
            Some(load_knowledge(cfg)?)
        } else {
            None
        };
        Ok(Self {
            tokenizer: Tokenizer::new()?,
            knowledge,
            context_length: cfg.clip.model.text.context_length,
        })
    }

    /// Tokenises `captions` (padded to the longest) and matches their knowledge passages.
    pub fn encode(&self, captions: &[&str], device: &Device) -> Result<TextBatch> {
        TextBatch::from_captions(
            captions,
            &self.tokenizer,
            self.knowledge.as_ref(),
            self.context_length,
            device,
        )
    }
}

/// The config's knowledge base (`date.knowledge_file`, or the built-in one), its passages written for
/// the config's side convention.
pub fn load_knowledge(cfg: &TgcNetConfig) -> Result<KnowledgeBase> {
    let kb = match &cfg.date.knowledge_file {
        Some(p) => KnowledgeBase::from_toml_file(p),
        None => KnowledgeBase::default_base(),
    };
    kb.map(|kb| kb.with_convention(cfg.laterality, cfg.date.modality))
        .map_err(|e| ModelError::Knowledge(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captions() -> [&'static str; 2] {
        [
            "Bilateral pulmonary infection, two infected areas, middle left lung and lower right lung.",
            "no finding words here",
        ]
    }

    #[test]
    fn text_batch_from_captions() {
        let dev = Device::flex();
        let cfg = TgcNetConfig::tiny();
        let enc = CaptionEncoder::new(&cfg).expect("encoder");
        let t = enc.encode(&captions(), &dev).expect("text");
        let [b, l] = t.ids.dims();
        assert_eq!(b, 2);
        assert!(l < 77, "padded to the longest caption, not the context");
        let ids = t
            .ids
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("ids");
        assert_eq!(ids[0], 49406);
        assert_eq!(ids[l], 49406);
        // The longest row ends with the end token.
        assert!(ids[l - 1] == 49407 || ids[2 * l - 1] == 49407);
        assert!(
            !t.knowledge[0].is_empty(),
            "terms matched in a QaTa caption"
        );
        assert!(t.knowledge[1].is_empty());
    }
}
