//! The command line, as clap derive structs only. Each help text states its default and unit.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// mulki: continual learning of CLIP models without forgetting (MulKI), in Rust.
#[derive(Parser, Debug)]
#[command(name = "mulki", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print image and text embeddings of a CLIP model and their similarities.
    Embed(EmbedArgs),
    /// Speed benchmarks, side by side with PyTorch where it is installed.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// HF CLIP folder: config.json + model.safetensors (+ vocab.json and merges.txt for text).
    #[arg(long)]
    pub model: PathBuf,
    /// An image file (png or jpeg); repeat for several.
    #[arg(long = "image", value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// A text; repeat for several.
    #[arg(long = "text", value_name = "STRING")]
    pub texts: Vec<String>,
    /// The original OpenAI BPE file (bpe_simple_vocab_16e6.txt.gz), used instead of the folder's
    /// vocab.json + merges.txt.
    #[arg(long, value_name = "FILE")]
    pub bpe: Option<PathBuf>,
    /// Print every embedding value (default: the first 8 of each normalised embedding).
    #[arg(long)]
    pub full: bool,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// CPU: FMA peak, GEMM GFLOP/s, ViT-B/16 forward and tiny training step images/s.
    Cpu(BenchCpuArgs),
}

#[derive(Args, Debug)]
pub struct BenchCpuArgs {
    /// Threads for mulki and for PyTorch (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Images per ViT-B/16 forward pass (default 4).
    #[arg(long, default_value_t = 4)]
    pub vit_batch: usize,
    /// Images per tiny-model training step (default 32).
    #[arg(long, default_value_t = 32)]
    pub tiny_batch: usize,
    /// Side of the square GEMM (default 1024).
    #[arg(long, default_value_t = 1024)]
    pub gemm_n: usize,
    /// Timed repetitions of the ViT forward (default 3; the tiny step runs 10× as many).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Python with torch (and transformers) for the reference column (default: python3).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Skip the PyTorch column.
    #[arg(long)]
    pub no_torch: bool,
}
