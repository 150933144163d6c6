//! Datasets, image transforms and the batch loader.
