//! CUDA backend of mulki.
