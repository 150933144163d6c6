//! The [`Storage`] trait through which every filesystem effect of a commit or a rotation goes,
//! with [`RealStorage`] (the disk, plus the `MULKI_CRASH_AT` abort hook) and [`FailingStorage`]
//! (for tests: a disk that fills up after k bytes, or a process that dies at a crash point).
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The environment variable naming the [`CrashPoint`] at which [`RealStorage`] aborts.
pub const CRASH_ENV: &str = "MULKI_CRASH_AT";

/// A named instant in the commit protocol, where a crash leaves a distinct on-disk state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// File `n` (zero-based, in the order given to `commit`) is written and synced.
    AfterFile(usize),
    /// Every file is written; the manifest is not.
    BeforeManifest,
    /// The manifest is written and synced, still under the `.tmp` name.
    AfterManifest,
    /// Just before the `.tmp` directory is renamed to its final name (after a replaced
    /// checkpoint has been renamed aside).
    BeforeRename,
    /// The checkpoint has its final name; the parent is not yet synced, a replaced one not yet
    /// deleted.
    AfterRename,
}

impl CrashPoint {
    /// The name `MULKI_CRASH_AT` matches: `after-file-0`, `before-manifest`, `after-manifest`,
    /// `before-rename`, `after-rename`.
    pub fn name(&self) -> String {
        match self {
            CrashPoint::AfterFile(n) => format!("after-file-{n}"),
            CrashPoint::BeforeManifest => "before-manifest".into(),
            CrashPoint::AfterManifest => "after-manifest".into(),
            CrashPoint::BeforeRename => "before-rename".into(),
            CrashPoint::AfterRename => "after-rename".into(),
        }
    }
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Every filesystem effect of the checkpoint layer, so tests can inject failures. Reads do not
/// go through it: they cannot damage a checkpoint.
pub trait Storage {
    /// Creates (or truncates) `path`, writes `bytes` and syncs the file to disk.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Creates `path` and any missing parents.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to` (same filesystem, `to` absent).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Syncs a directory, which makes the creations and renames inside it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Called at each crash point of a commit; an error stops the commit there.
    fn at(&self, point: CrashPoint) -> io::Result<()>;
}

/// The real filesystem. [`Storage::at`] aborts the process when `MULKI_CRASH_AT` names the
/// point, which lets a kill-and-resume harness stop a real run at an exact instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealStorage;

impl Storage for RealStorage {
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    #[cfg(unix)]
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    /// Windows cannot open a directory for syncing; NTFS journals renames itself.
    #[cfg(not(unix))]
    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn at(&self, point: CrashPoint) -> io::Result<()> {
        if let Some(want) = std::env::var_os(CRASH_ENV) {
            if want == point.name().as_str() {
                std::process::abort();
            }
        }
        Ok(())
    }
}

/// For tests: the real filesystem, made to fail the way a disk or a process does.
///
/// - [`FailingStorage::full_after`]: writes fail with ENOSPC (`ErrorKind::StorageFull`, raw OS
///   error 28) once `k` bytes have been written in total; the write that crosses the limit
///   leaves its first bytes on disk, as a real full disk does. Renames and removals still work.
/// - [`FailingStorage::crash_at`]: [`Storage::at`] fails at the given point and every operation
///   after it fails too, so the commit's clean-up cannot run and the disk is left exactly as a
///   crash there would leave it.
#[derive(Debug, Default)]
pub struct FailingStorage {
    limit: Option<u64>,
    crash: Option<CrashPoint>,
    written: AtomicU64,
    crashed: AtomicBool,
}

impl FailingStorage {
    /// Fails any write that would take the total written past `bytes`.
    pub fn full_after(bytes: u64) -> Self {
        FailingStorage { limit: Some(bytes), ..Self::default() }
    }

    /// Stops dead at `point`.
    pub fn crash_at(point: CrashPoint) -> Self {
        FailingStorage { crash: Some(point), ..Self::default() }
    }

    /// Bytes written so far (including the part of a write cut short by ENOSPC).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    /// Whether the crash point has been reached.
    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    fn alive(&self) -> io::Result<()> {
        if self.crashed() {
            Err(io::Error::other("process crashed (injected)"))
        } else {
            Ok(())
        }
    }
}

/// ENOSPC as the OS reports it.
fn no_space() -> io::Error {
    #[cfg(unix)]
    {
        io::Error::from_raw_os_error(28)
    }
    #[cfg(not(unix))]
    {
        io::Error::new(io::ErrorKind::StorageFull, "no space left on device (injected)")
    }
}

impl Storage for FailingStorage {
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.alive()?;
        let Some(limit) = self.limit else {
            let r = RealStorage.write_file(path, bytes);
            self.written.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            return r;
        };
        let done = self.written();
        let room = usize::try_from(limit.saturating_sub(done)).unwrap_or(usize::MAX);
        let fits = bytes.get(..room).unwrap_or(bytes);
        let mut file = File::create(path)?;
        file.write_all(fits)?;
        self.written.fetch_add(fits.len() as u64, Ordering::SeqCst);
        if fits.len() < bytes.len() {
            return Err(no_space());
        }
        file.sync_all()
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        RealStorage.create_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.alive()?;
        RealStorage.rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        RealStorage.sync_dir(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.alive()?;
        RealStorage.remove_dir(path)
    }

    fn at(&self, point: CrashPoint) -> io::Result<()> {
        self.alive()?;
        if self.crash == Some(point) {
            self.crashed.store(true, Ordering::SeqCst);
            return Err(io::Error::other(format!("crashed at {point} (injected)")));
        }
        Ok(())
    }
}
