//! Datasets, image transforms and the batch loader: split listing (ImageFolder, CSV, IDX),
//! few-shot subsets, decoding and CLIP's transforms (HF `CLIPImageProcessor`, torchvision
//! `RandomResizedCrop`), counter-based sampling, the parallel prefetching loader and ZSCL's
//! reference set. Everything random is a pure function of (seed, task, counter).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use crate::run::config::{DatasetFormat, TaskConfig};

pub mod check;
pub mod csv;
pub mod decode;
pub mod error;
pub mod few_shot;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod pairs;
pub mod reference;
pub mod resize;
pub mod sampler;
pub mod transform;

pub use check::{check, CheckReport, SplitCheck};
pub use decode::{load_rgb8, ImageError, MAX_DECODED_BYTES};
pub use error::DataError;
pub use few_shot::few_shot;
pub use idx::IdxImages;
pub use loader::{Batch, BatchSpec, Loader, LoaderConfig, SampleSpec};
pub use reference::ReferenceSet;
pub use resize::CropBox;
pub use sampler::{augment_rng, epoch_permutation, sample_indices, EpochSampler};
pub use transform::{RandomResizedCrop, Transform, CLIP_MEAN, CLIP_STD};

/// The `image` crate this module decodes with, for callers (tests) that write images.
pub use image as codec;

/// Where an item's pixels come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// An image file (png or jpeg).
    File(PathBuf),
    /// Record `index` of an IDX images file (shared, held in memory).
    Idx { images: Arc<IdxImages>, index: usize },
}

/// One labelled example.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub source: Source,
    /// 0-based class index, `< Split::classes`.
    pub label: usize,
}

impl Item {
    /// Decodes the item to RGB8 (IDX grayscale replicated to three channels).
    pub fn load(&self) -> Result<RgbImage, ImageError> {
        match &self.source {
            Source::File(path) => load_rgb8(path),
            Source::Idx { images, index } => Ok(images.rgb8(*index)),
        }
    }

    /// The file (and IDX record) for messages.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::File(path) => path.display().to_string(),
            Source::Idx { images, index } => format!("{} record {index}", images.path.display()),
        }
    }
}

/// The items of one split, in a deterministic order (class, then path; or file order).
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub items: Vec<Item>,
    pub classes: usize,
}

impl Split {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for it in &self.items {
            counts[it.label] += 1;
        }
        counts
    }

    /// Lists `split` (a folder, CSV stem or IDX prefix under `task.root`) in the task's format.
    pub fn load(task: &TaskConfig, split: &str) -> Result<Split, DataError> {
        let root = dataset_root(task)?;
        let classes = task.classes.len();
        match task.format {
            DatasetFormat::ImageFolder => folder::list(root, split, folder_names(task)),
            DatasetFormat::Csv => csv::list(root, split, classes),
            DatasetFormat::Idx => idx::list(root, split, classes),
        }
    }

    /// The task's training split.
    pub fn train(task: &TaskConfig) -> Result<Split, DataError> {
        Split::load(task, &task.train_split)
    }

    /// The task's test split.
    pub fn test(task: &TaskConfig) -> Result<Split, DataError> {
        Split::load(task, &task.test_split)
    }
}

/// Folder names of an ImageFolder task: `folders` when given, else `classes`.
pub fn folder_names(task: &TaskConfig) -> &[String] {
    task.folders.as_deref().unwrap_or(&task.classes)
}

fn dataset_root(task: &TaskConfig) -> Result<&Path, DataError> {
    if task.root.is_dir() {
        Ok(&task.root)
    } else {
        Err(DataError::MissingDataset { path: task.root.clone() })
    }
}

/// Whether `path` names a png or jpeg by its extension (any case).
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()))
}
