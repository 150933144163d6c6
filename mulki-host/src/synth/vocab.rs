//! The synthetic world's word-level tokenizer: a fixed vocabulary of every caption and prompt
//! word (reserved shape names included, so they have ids that pretraining never trains).
//! `<eot>` is the largest id, so CLIP's legacy argmax pooling and the first-EOS rule agree.
use std::collections::HashMap;

use super::caption::{GENERIC, PREFIXES};
use super::world::{Colour, Pattern, Position, Shape, Size, COUNT_WORDS};
use crate::tokenizer::Tokenize;

pub const PAD_ID: u32 = 0;
pub const UNK_ID: u32 = 1;
/// Ids of words start here.
const FIRST_WORD: u32 = 2;

/// Words that only the task prompts and phrases use.
const EXTRA: [&str; 4] = ["on", "at", "in", "the"];

#[derive(Clone, Debug)]
pub struct WordVocab {
    words: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Default for WordVocab {
    fn default() -> Self {
        Self::new()
    }
}

impl WordVocab {
    /// The vocabulary: `<pad>`, `<unk>`, the words (fixed order), `<sot>`, `<eot>`.
    pub fn new() -> Self {
        let mut words: Vec<String> = Vec::new();
        let mut add = |w: &str| {
            for part in w.split_whitespace() {
                if !words.iter().any(|x| x == part) {
                    words.push(part.to_string());
                }
            }
        };
        PREFIXES.iter().for_each(|p| add(p));
        add("a an");
        GENERIC.iter().for_each(|(one, many)| {
            add(one);
            add(many)
        });
        COUNT_WORDS.iter().for_each(|w| add(w));
        Size::ALL.iter().for_each(|s| add(s.name()));
        Colour::ALL.iter().for_each(|c| add(c.name()));
        Pattern::ALL.iter().for_each(|p| add(p.name()));
        Shape::ALL.iter().for_each(|s| {
            add(s.name());
            add(s.plural())
        });
        EXTRA.iter().for_each(|w| add(w));
        Position::ALL.iter().for_each(|p| add(p.phrase()));
        let ids = words.iter().enumerate().map(|(i, w)| (w.clone(), FIRST_WORD + i as u32)).collect();
        WordVocab { words, ids }
    }

    /// Ids in all, specials included (`eot_id() + 1`).
    pub fn vocab_size(&self) -> usize {
        self.words.len() + 4
    }

    pub fn sot_id(&self) -> u32 {
        FIRST_WORD + self.words.len() as u32
    }

    /// The largest id.
    pub fn eot_id(&self) -> u32 {
        self.sot_id() + 1
    }

    pub fn unk_id(&self) -> u32 {
        UNK_ID
    }

    /// The words with ids `2..`, in id order.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Id of one (already lowercased) word.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.ids.get(word).copied()
    }

    /// Ids of `text`: lowercased, split on whitespace, '.' and ',' stripped; unknown words
    /// become `<unk>`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        text.split_whitespace()
            .map(|w| w.trim_matches(['.', ',']).to_lowercase())
            .filter(|w| !w.is_empty())
            .map(|w| self.id(&w).unwrap_or(UNK_ID))
            .collect()
    }

    /// Words of `ids` joined by spaces (specials by their names, padding skipped).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out: Vec<&str> = Vec::new();
        for &id in ids {
            out.push(match id {
                PAD_ID => continue,
                UNK_ID => "<unk>",
                _ if id == self.sot_id() => "<sot>",
                _ if id == self.eot_id() => "<eot>",
                _ => match self.words.get((id - FIRST_WORD) as usize) {
                    Some(w) => w,
                    None => "<unk>",
                },
            });
        }
        out.join(" ")
    }
}

impl Tokenize for WordVocab {
    /// `<sot>`, the ids (cut to `context_length − 2`), `<eot>`, `<pad>`s; a row always ends
    /// its text with `<eot>` when `context_length ≥ 2`.
    fn tokenize_rows(&self, texts: &[String], context_length: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(texts.len() * context_length);
        for text in texts {
            let mut row = vec![PAD_ID; context_length];
            if context_length >= 2 {
                let ids = self.encode(text);
                let n = ids.len().min(context_length - 2);
                row[0] = self.sot_id();
                row[1..1 + n].copy_from_slice(&ids[..n]);
                row[1 + n] = self.eot_id();
            } else if context_length == 1 {
                row[0] = self.eot_id();
            }
            out.extend(row);
        }
        out
    }

    fn pad_id(&self) -> u32 {
        PAD_ID
    }
}
