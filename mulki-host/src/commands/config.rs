//! `mulki config --print PRESET`: a complete run config with every default written out.
use anyhow::Result;
use mulki_core::method::MethodConfig;

use crate::cli::ConfigArgs;

/// A config a user can copy and edit: one example task, the preset's full method section.
pub fn run(args: &ConfigArgs) -> Result<()> {
    let method = MethodConfig::preset(&args.print)?;
    let train = toml::to_string(&crate::run::config::TrainConfig::default())?;
    let mut table = toml::Table::try_from(&method)?;
    table.insert("preset".into(), toml::Value::String(args.print.clone()));
    let method = toml::to_string(&table)?;
    print!(
        r#"# mulki run config (preset `{preset}`); relative paths are relative to this file.
seed = 1
# output_dir = "runs/my-run"   # default: runs/<this file's stem>
threads = 0                    # CPU threads, 0 = all cores
device = "cpu"

[model]
source = "models/clip-vit-base-patch16"   # HF CLIP folder or a mulki checkpoint directory
# tokenizer = "models/clip-vit-base-patch16"   # vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz

[method]
{method}
[train]
{train}
# [reference]          # the zscl preset's reference set
# images = "data/reference/images"
# captions = "data/reference/captions.txt"
# batch_size = 64

[[tasks]]
name = "MyDataset"
root = "data/my-dataset"       # train/<class>/*.png, test/<class>/*.png
format = "image-folder"        # or "csv" (train.csv: path,label) or "idx" (MNIST files)
classes = ["cat", "dog"]
train_templates = ["a photo of a {{}}."]
eval_templates = ["a photo of a {{}}.", "a picture of a {{}}."]
"#,
        preset = args.print
    );
    Ok(())
}
