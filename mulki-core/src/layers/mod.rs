//! Layers: structs of dims and buffer handles that own no memory. Each has `forward` and a
//! `backward` that mirrors it line by line in reverse.
pub mod block;
pub mod linear;
pub mod similarity;
