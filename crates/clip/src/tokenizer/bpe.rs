//! Byte-level BPE of OpenAI's `simple_tokenizer.py`: the vocabulary built from the embedded merges file,
//! the merge loop (plus an exact O(n log n) variant for long words), a bounded cache and decoding.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

use super::{END_TOKEN, START_TOKEN, VOCAB_SIZE, err};
use crate::error::Result;

/// OpenAI's merges file (MIT licence), gzip-compressed.
const BPE_GZ: &[u8] = include_bytes!("../../assets/bpe_simple_vocab_16e6.txt.gz");
/// `merges[1:49152-256-2+1]`: the merges CLIP uses.
const N_MERGES: usize = 49152 - 256 - 2;
/// Entries of the BPE cache before it is emptied (keeps memory bounded on endless distinct input).
const CACHE_LIMIT: usize = 1 << 18;
/// Words longer than this (in byte symbols) use the priority-queue merge.
const HEAP_BPE_MIN_SYMBOLS: usize = 48;

/// GPT-2/CLIP `bytes_to_unicode`: the printable Latin-1 bytes map to themselves, the others to U+0100.. in
/// order. Returns the table and the byte order of the vocabulary's first 256 entries.
fn bytes_to_unicode() -> ([char; 256], Vec<u8>) {
    let mut order: Vec<u8> = Vec::with_capacity(256);
    order.extend(b'!'..=b'~');
    order.extend(0xA1u8..=0xAC);
    order.extend(0xAEu8..=0xFF);
    let mut table = ['\0'; 256];
    for &b in &order {
        table[b as usize] = char::from(b);
    }
    let mut n = 0u32;
    for b in 0..=255u8 {
        if !order.contains(&b) {
            order.push(b);
            table[b as usize] = char::from_u32(256 + n).unwrap_or('\u{FFFD}');
            n += 1;
        }
    }
    (table, order)
}

/// The vocabulary and merges of CLIP's BPE, with a cache of merged pieces.
pub(super) struct Bpe {
    /// Id of each byte's symbol (without `</w>`; add 256 for the `</w>` form).
    byte_ids: [u32; 256],
    /// `(left id, right id)` → `(rank, merged id)`.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Vocabulary strings (for [`Bpe::decode`]).
    vocab: Vec<String>,
    /// `bytes_to_unicode` inverse.
    byte_decoder: HashMap<char, u8>,
    cache: Mutex<HashMap<String, Vec<u32>>>,
    /// Whether the merges are ordered so that [`Bpe::merge_heap`] is exact.
    heap_merge_ok: bool,
}

/// The embedded merges file, decompressed.
fn merges_text() -> Result<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(BPE_GZ)
        .read_to_string(&mut text)
        .map_err(|e| err(format!("cannot decompress the embedded BPE merges: {e}")))?;
    Ok(text)
}

/// The merges CLIP uses (lines 2..=N_MERGES+1 of the file; the first is a version line), as symbol pairs.
fn parse_merges(text: &str) -> Result<Vec<(&str, &str)>> {
    let lines: Vec<&str> = text.split('\n').collect();
    if lines.len() < N_MERGES + 1 {
        return Err(err(format!(
            "the BPE merges file has {} lines, expected at least {}",
            lines.len(),
            N_MERGES + 1
        )));
    }
    let mut merges_str: Vec<(&str, &str)> = Vec::with_capacity(N_MERGES);
    for (i, line) in lines[1..=N_MERGES].iter().enumerate() {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => merges_str.push((a, b)),
            _ => {
                return Err(err(format!(
                    "BPE merge line {} is malformed: {line:?}",
                    i + 2
                )));
            }
        }
    }
    Ok(merges_str)
}

impl Bpe {
    /// Builds the vocabulary and merge table from the embedded merges file.
    pub(super) fn new() -> Result<Self> {
        let text = merges_text()?;
        let merges_str = parse_merges(&text)?;
        let (byte_table, order) = bytes_to_unicode();
        let mut vocab: Vec<String> = Vec::with_capacity(VOCAB_SIZE);
        for &b in &order {
            vocab.push(byte_table[b as usize].to_string());
        }
        for &b in &order {
            vocab.push(format!("{}</w>", byte_table[b as usize]));
        }
        for (a, b) in &merges_str {
            vocab.push(format!("{a}{b}"));
        }
        vocab.push("<start_of_text>".to_string());
        vocab.push("<end_of_text>".to_string());
        if vocab.len() != VOCAB_SIZE {
            return Err(err(format!(
                "vocabulary has {} entries, expected {VOCAB_SIZE}",
                vocab.len()
            )));
        }
        // `dict(zip(vocab, range(len(vocab))))`: a repeated string keeps its last id.
        let mut encoder: HashMap<&str, u32> = HashMap::with_capacity(VOCAB_SIZE);
        for (i, v) in vocab.iter().enumerate() {
            encoder.insert(v.as_str(), i as u32);
        }
        let mut byte_ids = [0u32; 256];
        for (i, &b) in order.iter().enumerate() {
            byte_ids[b as usize] = i as u32;
        }
        let mut merges: HashMap<(u32, u32), (u32, u32)> = HashMap::with_capacity(N_MERGES);
        for (rank, (a, b)) in merges_str.iter().enumerate() {
            // A merge whose halves are not vocabulary entries can never apply (every BPE symbol is one).
            let (Some(&ia), Some(&ib)) = (encoder.get(a), encoder.get(b)) else {
                continue;
            };
            let joined = format!("{a}{b}");
            let Some(&im) = encoder.get(joined.as_str()) else {
                return Err(err(format!(
                    "merged symbol {joined:?} is not in the vocabulary"
                )));
            };
            merges.insert((ia, ib), (rank as u32, im));
        }
        if encoder.get("<start_of_text>") != Some(&START_TOKEN)
            || encoder.get("<end_of_text>") != Some(&END_TOKEN)
        {
            return Err(err("special token ids are not 49406/49407"));
        }
        let byte_decoder = order.iter().map(|&b| (byte_table[b as usize], b)).collect();
        let heap_merge_ok = merge_order_is_consistent(&merges);
        Ok(Bpe {
            byte_ids,
            merges,
            vocab,
            byte_decoder,
            cache: Mutex::new(HashMap::new()),
            heap_merge_ok,
        })
    }

    /// Number of ids (49,408).
    pub(super) fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Number of merges that can apply.
    pub(super) fn merge_count(&self) -> usize {
        self.merges.len()
    }

    /// `SimpleTokenizer.decode`: ids back to text (`</w>` → space, invalid UTF-8 → U+FFFD). Ids outside the
    /// vocabulary are skipped (Python raises `KeyError`).
    pub(super) fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(sym) = self.vocab.get(id as usize) else {
                continue;
            };
            for c in sym.chars() {
                if let Some(&b) = self.byte_decoder.get(&c) {
                    bytes.push(b);
                }
            }
        }
        String::from_utf8_lossy(&bytes).replace("</w>", " ")
    }

    /// BPE of one pre-token (the `bpe()` method of `SimpleTokenizer`), appending its ids.
    pub(super) fn encode_piece(&self, piece: &str, out: &mut Vec<u32>) {
        if let Ok(cache) = self.cache.lock()
            && let Some(ids) = cache.get(piece)
        {
            out.extend_from_slice(ids);
            return;
        }
        let bytes = piece.as_bytes();
        let mut word: Vec<u32> = bytes.iter().map(|&b| self.byte_ids[b as usize]).collect();
        if let Some(last) = word.last_mut() {
            *last += 256;
        }
        word = if self.heap_merge_ok && word.len() > HEAP_BPE_MIN_SYMBOLS {
            self.merge_heap(word)
        } else {
            self.merge_naive(word)
        };
        out.extend_from_slice(&word);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(piece.to_string(), word);
        }
    }

    /// `SimpleTokenizer.bpe` as written: merge every occurrence (left to right) of the lowest-ranked adjacent
    /// pair, repeat. Quadratic in the word length.
    fn merge_naive(&self, mut word: Vec<u32>) -> Vec<u32> {
        while word.len() > 1 {
            let mut best: Option<(u32, u32, u32, u32)> = None; // (rank, first, second, merged)
            for pair in word.windows(2) {
                if let Some(&(rank, merged)) = self.merges.get(&(pair[0], pair[1]))
                    && best.is_none_or(|b| rank < b.0)
                {
                    best = Some((rank, pair[0], pair[1], merged));
                }
            }
            let Some((_, first, second, merged)) = best else {
                break;
            };
            let mut next = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if word[i] == first && i + 1 < word.len() && word[i + 1] == second {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(word[i]);
                    i += 1;
                }
            }
            word = next;
        }
        word
    }

    /// The same merges with a priority queue of `(rank, position)`: O(n log n). Equal to
    /// [`Bpe::merge_naive`] because every merge that uses a symbol ranks after every merge that makes
    /// it (checked in `new()`, `heap_merge_ok`): a pass of the naive loop creates no pair of lower rank, so
    /// popping equal ranks left to right reproduces it.
    fn merge_heap(&self, word: Vec<u32>) -> Vec<u32> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        const NONE: usize = usize::MAX;
        let n = word.len();
        let mut ids = word;
        let mut next: Vec<usize> = (1..=n).map(|i| if i < n { i } else { NONE }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { NONE } else { i - 1 }).collect();
        let mut alive = vec![true; n];
        // (rank, left position, left id, right id)
        let mut heap: BinaryHeap<Reverse<(u32, usize, u32, u32)>> = BinaryHeap::with_capacity(n);
        for i in 0..n.saturating_sub(1) {
            if let Some(&(rank, _)) = self.merges.get(&(ids[i], ids[i + 1])) {
                heap.push(Reverse((rank, i, ids[i], ids[i + 1])));
            }
        }
        while let Some(Reverse((_, i, left, right))) = heap.pop() {
            let j = next[i];
            if !alive[i] || j == NONE || ids[i] != left || ids[j] != right {
                continue; // stale
            }
            let Some(&(_, merged)) = self.merges.get(&(left, right)) else {
                continue;
            };
            ids[i] = merged;
            alive[j] = false;
            let k = next[j];
            next[i] = k;
            if k != NONE {
                prev[k] = i;
                if let Some(&(rank, _)) = self.merges.get(&(merged, ids[k])) {
                    heap.push(Reverse((rank, i, merged, ids[k])));
                }
            }
            let h = prev[i];
            if h != NONE
                && let Some(&(rank, _)) = self.merges.get(&(ids[h], merged))
            {
                heap.push(Reverse((rank, h, ids[h], merged)));
            }
        }
        (0..n).filter(|&i| alive[i]).map(|i| ids[i]).collect()
    }
}

/// Does every merge that uses a symbol rank after every merge that produces it? (Then the priority-queue
/// merge equals the naive one.)
fn merge_order_is_consistent(merges: &HashMap<(u32, u32), (u32, u32)>) -> bool {
    let mut max_made: HashMap<u32, u32> = HashMap::new();
    let mut min_used: HashMap<u32, u32> = HashMap::new();
    for (&(a, b), &(rank, merged)) in merges {
        let e = max_made.entry(merged).or_insert(rank);
        *e = (*e).max(rank);
        for s in [a, b] {
            let e = min_used.entry(s).or_insert(rank);
            *e = (*e).min(rank);
        }
    }
    max_made
        .iter()
        .all(|(s, &made)| min_used.get(s).is_none_or(|&used| made < used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_merge_equals_naive() {
        let t = match Bpe::new() {
            Ok(b) => b,
            Err(e) => panic!("bpe: {e}"),
        };
        assert!(
            t.heap_merge_ok,
            "the CLIP merges should be consistently ordered"
        );
        let mut seed: u64 = 0x1234_5678;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        let alphabets: [&[u8]; 3] = [b"abcdefghijklmnopqrstuvwxyz", b"aeiost", b"ab"];
        for round in 0..3000 {
            let alphabet = alphabets[round % 3];
            let len = 1 + rnd() % 120;
            let mut word: Vec<u32> = (0..len)
                .map(|_| t.byte_ids[alphabet[rnd() % alphabet.len()] as usize])
                .collect();
            if let Some(last) = word.last_mut() {
                *last += 256;
            }
            assert_eq!(
                t.merge_heap(word.clone()),
                t.merge_naive(word.clone()),
                "word {word:?}"
            );
        }
    }
}
