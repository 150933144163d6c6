//! Atomic checkpoint directories with a SHA-256 manifest.
