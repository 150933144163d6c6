//! The CLIP BPE tokenizer.
