//! Scratch directories for tests. Each is unique to the process and the test's name and is
//! removed when dropped, also when the test panics: the end-to-end tests write checkpoints of
//! tens of MB, and a suite that leaves them behind fills a CI machine's disk within a few runs.
//! Set `MULKI_KEEP_TEST_DIRS=1` to keep them for a post-mortem.
//!
//! The binary's own tests (mulki-host/tests) include this file by path, so there is one
//! definition.
use std::ops::Deref;
use std::path::{Path, PathBuf};

pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh empty directory `$TMPDIR/mulki-{kind}-{pid}-{name}`.
    pub fn new(kind: &str, name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mulki-{kind}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("MULKI_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
