//! Checkpoint storage (`mulki_host::checkpoint`): commit/verify round trips, discovery that skips
//! unfinished and damaged checkpoints with a warning, ENOSPC and crash injection at every point
//! (simulated, and a real `abort()` in a child process), rotation, and the `state.postcard`
//! header. Every test works in its own temporary run directory.
use mulki_tests::scratch::Scratch;
use std::fs;
use std::path::{Path, PathBuf};

use mulki_host::checkpoint::{
    checkpoint_dir, commit, decode_header, encode_header, find_latest, load_file, rotate, task_end, verify,
    CheckpointError, CrashPoint, FailingStorage, Kind, Manifest, RealStorage, MANIFEST_FILE,
};

const HASH: &str = "c0ffee";

/// A fresh, empty folder unique to this test (and process).
fn temp_dir(test: &str) -> Scratch {
    Scratch::new("ckpt", test)
}

/// Deterministic bytes that differ with `seed`.
fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// The three files the runner writes, with sizes that put file boundaries at distinct offsets.
fn files(seed: u8) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("model.safetensors", bytes(3000, seed)),
        ("state.safetensors", bytes(1500, seed.wrapping_add(1))),
        ("state.postcard", bytes(77, seed.wrapping_add(2))),
    ]
}

fn as_refs<'a>(files: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
    files.iter().map(|(n, b)| (*n, b.as_slice())).collect()
}

fn commit_real(run: &Path, task: usize, step: usize, kind: Kind, seed: u8) -> PathBuf {
    commit(run, task, step, kind, HASH, &as_refs(&files(seed)), &RealStorage).unwrap()
}

/// (task, step) of the checkpoint `find_latest` returns, and its warnings.
fn latest(run: &Path) -> (Option<(usize, usize)>, Vec<String>) {
    let (found, warnings) = find_latest(run, Some(HASH)).unwrap();
    (found.map(|f| (f.manifest.task, f.manifest.step)), warnings)
}

/// Every entry name under `run/task-TT`, sorted.
fn entries(run: &Path, task: usize) -> Vec<String> {
    let dir = run.join(format!("task-{task:02}"));
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0x40;
    fs::write(path, b).unwrap();
}

#[test]
fn commit_verify_round_trip() {
    let run = temp_dir("round-trip");
    let f = files(1);
    let dir = commit(&run, 3, 42, Kind::TaskEnd, HASH, &as_refs(&f), &RealStorage).unwrap();
    assert_eq!(dir, run.join("task-03").join("step-000042"));
    assert_eq!(dir, checkpoint_dir(&run, 3, 42));
    assert_eq!(entries(&run, 3), ["step-000042"]);

    let m = verify(&dir).unwrap();
    assert_eq!((m.task, m.step, m.kind), (3, 42, Kind::TaskEnd));
    assert_eq!((m.format.as_str(), m.version), ("mulki-checkpoint", 1));
    assert_eq!(m.config_hash, HASH);
    assert_eq!(m.files.len(), 3);
    for (name, data) in &f {
        assert_eq!(m.files[*name].bytes, data.len() as u64);
        assert_eq!(&load_file(&dir, name).unwrap(), data);
    }

    // The manifest text is the documented JSON.
    let json: serde_json::Value = serde_json::from_slice(&fs::read(dir.join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(json["format"], "mulki-checkpoint");
    assert_eq!(json["version"], 1);
    assert_eq!(json["task"], 3);
    assert_eq!(json["step"], 42);
    assert_eq!(json["kind"], "task-end");
    assert_eq!(json["config_hash"], HASH);
    assert_eq!(json["files"]["state.postcard"]["bytes"], 77);
    assert_eq!(json["files"]["state.postcard"]["sha256"].as_str().unwrap().len(), 64);
    let periodic = commit_real(&run, 3, 43, Kind::Periodic, 1);
    assert_eq!(verify(&periodic).unwrap().kind, Kind::Periodic);
    let text = fs::read_to_string(periodic.join(MANIFEST_FILE)).unwrap();
    assert!(text.contains("\"periodic\""), "{text}");
}

#[test]
fn names_are_zero_padded_and_widen_on_overflow() {
    let run = Path::new("/r");
    assert_eq!(checkpoint_dir(run, 0, 0), Path::new("/r/task-00/step-000000"));
    assert_eq!(checkpoint_dir(run, 123, 1_234_567), Path::new("/r/task-123/step-1234567"));
    // Wide numbers round-trip through commit and discovery.
    let run = temp_dir("wide");
    commit_real(&run, 100, 1_000_000, Kind::Periodic, 0);
    commit_real(&run, 99, 999_999, Kind::Periodic, 0);
    assert_eq!(latest(&run), (Some((100, 1_000_000)), vec![]));
}

#[test]
fn find_latest_picks_newest_and_skips_damage_with_warnings() {
    let run = temp_dir("find-latest");
    assert_eq!(latest(&run.join("absent")), (None, vec![]));
    assert_eq!(latest(&run), (None, vec![]));

    commit_real(&run, 0, 10, Kind::Periodic, 1);
    commit_real(&run, 0, 20, Kind::TaskEnd, 2);
    commit_real(&run, 1, 5, Kind::Periodic, 3);
    assert_eq!(latest(&run), (Some((1, 5)), vec![]));

    // Newer than task 1 step 5, each damaged in its own way.
    let tmp = run.join("task-01/step-000090.tmp");
    fs::create_dir_all(&tmp).unwrap();
    fs::write(tmp.join("model.safetensors"), b"partial").unwrap();

    let no_manifest = commit_real(&run, 1, 30, Kind::Periodic, 4);
    fs::remove_file(no_manifest.join(MANIFEST_FILE)).unwrap();

    let flipped = commit_real(&run, 1, 40, Kind::Periodic, 5);
    flip_byte(&flipped.join("state.safetensors"), 700);

    let truncated = commit_real(&run, 1, 50, Kind::Periodic, 6);
    let model = truncated.join("model.safetensors");
    let len = fs::metadata(&model).unwrap().len();
    fs::OpenOptions::new().write(true).open(&model).unwrap().set_len(len - 1).unwrap();

    // Non-checkpoint names are not taken for checkpoints.
    fs::create_dir_all(run.join("task-01/step-60")).unwrap();
    fs::create_dir_all(run.join("task-1/step-000070")).unwrap();
    fs::write(run.join("notes.txt"), "x").unwrap();

    let (found, warnings) = latest(&run);
    assert_eq!(found, Some((1, 5)));
    let warning = |needle: &str| {
        warnings
            .iter()
            .find(|w| w.contains(needle))
            .unwrap_or_else(|| panic!("no warning naming {needle}: {warnings:#?}"))
            .clone()
    };
    assert!(warning("step-000090.tmp").contains("unfinished"));
    assert!(warning("step-000030").contains("missing manifest"));
    let w = warning("step-000040");
    assert!(w.contains("hash mismatch") && w.contains("state.safetensors"), "{w}");
    let w = warning("step-000050");
    assert!(w.contains("size mismatch") && w.contains("expected 3000 bytes, got 2999"), "{w}");
    assert!(warning("step-60").contains("not a checkpoint name"));
    assert_eq!(warnings.len(), 5, "{warnings:#?}");
}

#[test]
fn config_hash_mismatch_is_returned_not_skipped() {
    let run = temp_dir("config-hash");
    let dir = commit_real(&run, 0, 10, Kind::Periodic, 1);
    let (found, warnings) = find_latest(&run, Some("other")).unwrap();
    let found = found.unwrap();
    assert!(warnings.is_empty());
    assert_eq!(found.dir, dir);
    assert!(!found.config_matches);
    assert_eq!(found.manifest.config_hash, HASH);
    assert!(find_latest(&run, None).unwrap().0.unwrap().config_matches);
    assert!(find_latest(&run, Some(HASH)).unwrap().0.unwrap().config_matches);
}

#[test]
fn load_file_rechecks_the_hash() {
    let run = temp_dir("load-file");
    let dir = commit_real(&run, 0, 1, Kind::Periodic, 9);
    flip_byte(&dir.join("state.postcard"), 3);
    let e = load_file(&dir, "state.postcard").unwrap_err();
    assert!(matches!(e, CheckpointError::HashMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("hash mismatch of file \"state.postcard\"") && msg.contains("expected sha256"), "{msg}");
    assert!(msg.contains(&dir.join("state.postcard").display().to_string()));
    // The other files are still fine.
    assert_eq!(load_file(&dir, "model.safetensors").unwrap(), files(9)[0].1);

    let e = load_file(&dir, "other.bin").unwrap_err();
    assert!(matches!(e, CheckpointError::NotInManifest { .. }), "{e}");
    let e = load_file(&dir, "../../etc/passwd").unwrap_err();
    assert!(matches!(e, CheckpointError::BadFileName { .. }), "{e}");
    fs::remove_file(dir.join("model.safetensors")).unwrap();
    let e = load_file(&dir, "model.safetensors").unwrap_err();
    assert!(matches!(e, CheckpointError::MissingFile { .. }), "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
}

/// Is the storage error ENOSPC, as the OS reports it?
fn is_enospc(e: &CheckpointError) -> bool {
    match e {
        CheckpointError::Io { error, .. } => {
            error.kind() == std::io::ErrorKind::StorageFull && error.raw_os_error() == Some(28)
        }
        _ => false,
    }
}

#[test]
fn enospc_at_any_byte_keeps_the_previous_checkpoint() {
    let run = temp_dir("enospc");
    let previous = commit_real(&run, 0, 10, Kind::Periodic, 1);

    // Measure what a commit of step 20 writes, in a scratch run (same names, same sizes).
    let scratch = temp_dir("enospc-measure");
    let counting = FailingStorage::full_after(u64::MAX);
    let new = files(2);
    commit(&scratch, 0, 20, Kind::Periodic, HASH, &as_refs(&new), &counting).unwrap();
    let total = counting.written();
    let data: u64 = new.iter().map(|(_, b)| b.len() as u64).sum();
    assert!(total > data, "the manifest is written too");

    // 0, small, each file boundary and mid-file, inside the manifest, one short of the end.
    let mut ks: Vec<u64> = vec![0, 1, 2, 100, 2999, 3000, 3001, 4000, 4499, 4500, 4501, 4576];
    ks.extend([data, data + 1, data + 50, total - 1]);
    ks.extend((0..total).step_by(97));
    for k in ks {
        for replace in [false, true] {
            let step = if replace { 10 } else { 20 };
            let storage = FailingStorage::full_after(k);
            let e = commit(&run, 0, step, Kind::Periodic, HASH, &as_refs(&new), &storage)
                .expect_err("commit past the limit must fail");
            assert!(is_enospc(&e), "k = {k}: {e}");
            let msg = e.to_string();
            assert!(msg.contains("io error during write") && msg.contains("os error 28"), "{msg}");
            assert!(msg.contains("step-0000") && msg.contains(".tmp"), "{msg}");

            // The previous checkpoint is untouched and still the one found; nothing else is left.
            assert_eq!(load_file(&previous, "model.safetensors").unwrap(), files(1)[0].1);
            verify(&previous).unwrap();
            assert_eq!(latest(&run), (Some((0, 10)), vec![]), "k = {k}");
            assert_eq!(entries(&run, 0), ["step-000010"], "k = {k}");
        }
    }

    // With exactly enough room it succeeds.
    let storage = FailingStorage::full_after(total);
    commit(&run, 0, 20, Kind::Periodic, HASH, &as_refs(&new), &storage).unwrap();
    assert_eq!(latest(&run), (Some((0, 20)), vec![]));
}

#[test]
fn enospc_in_a_new_task_leaves_no_checkpoint() {
    let run = temp_dir("enospc-new-task");
    commit_real(&run, 0, 10, Kind::TaskEnd, 1);
    let e = commit(&run, 1, 0, Kind::Periodic, HASH, &as_refs(&files(2)), &FailingStorage::full_after(10)).unwrap_err();
    assert!(is_enospc(&e), "{e}");
    assert_eq!(latest(&run), (Some((0, 10)), vec![]));
    assert!(entries(&run, 1).is_empty());
}

/// Where the run stands after a commit of `step` crashed at `point`, as (found, warnings).
fn crash_scenario(test: &str, point: CrashPoint, replace: bool) -> (Scratch, Option<(usize, usize)>, Vec<String>) {
    let run = temp_dir(test);
    commit_real(&run, 0, 5, Kind::Periodic, 1);
    commit_real(&run, 0, 10, Kind::Periodic, 2);
    let step = if replace { 10 } else { 20 };
    let storage = FailingStorage::crash_at(point);
    let e = commit(&run, 0, step, Kind::Periodic, HASH, &as_refs(&files(3)), &storage).unwrap_err();
    assert!(storage.crashed(), "{point}: {e}");
    assert!(e.to_string().contains(&format!("crash point {point}")), "{e}");
    let (found, warnings) = latest(&run);
    (run, found, warnings)
}

#[test]
fn simulated_crash_at_each_point_leaves_a_consistent_run() {
    let points = [
        CrashPoint::AfterFile(0),
        CrashPoint::AfterFile(1),
        CrashPoint::AfterFile(2),
        CrashPoint::BeforeManifest,
        CrashPoint::AfterManifest,
        CrashPoint::BeforeRename,
        CrashPoint::AfterRename,
    ];
    for point in points {
        // A new step: before the rename the previous checkpoint is found, after it the new one.
        let (run, found, warnings) = crash_scenario(&format!("crash-new-{point}"), point, false);
        if point == CrashPoint::AfterRename {
            assert_eq!((found, warnings.len()), (Some((0, 20)), 0), "{point}: {warnings:?}");
            assert_eq!(load_file(&checkpoint_dir(&run, 0, 20), "state.postcard").unwrap(), files(3)[2].1);
        } else {
            assert_eq!(found, Some((0, 10)), "{point}");
            assert_eq!(warnings.len(), 1, "{point}: {warnings:?}");
            assert!(warnings[0].contains("step-000020.tmp"), "{warnings:?}");
        }
        // Committing the step again cleans up.
        commit_real(&run, 0, 20, Kind::Periodic, 4);
        assert_eq!(latest(&run), (Some((0, 20)), vec![]), "{point}");
        assert_eq!(entries(&run, 0), ["step-000005", "step-000010", "step-000020"]);

        // Re-committing step 10: the old copy until the swap, the new one after it; in between
        // the step is absent and the one before it is found.
        let (run, found, warnings) = crash_scenario(&format!("crash-replace-{point}"), point, true);
        let step10 = checkpoint_dir(&run, 0, 10);
        match point {
            CrashPoint::BeforeRename => {
                assert_eq!(found, Some((0, 5)), "{point}");
                assert_eq!(warnings.len(), 2, "{warnings:?}");
                assert!(warnings.iter().any(|w| w.contains("step-000010.old")));
                assert!(warnings.iter().any(|w| w.contains("step-000010.tmp")));
            }
            CrashPoint::AfterRename => {
                assert_eq!(found, Some((0, 10)), "{point}");
                assert_eq!(load_file(&step10, "state.postcard").unwrap(), files(3)[2].1);
                assert_eq!(warnings.len(), 1, "{warnings:?}");
                assert!(warnings[0].contains("step-000010.old"), "{warnings:?}");
            }
            _ => {
                assert_eq!(found, Some((0, 10)), "{point}");
                assert_eq!(load_file(&step10, "state.postcard").unwrap(), files(2)[2].1);
                assert_eq!(warnings.len(), 1, "{warnings:?}");
            }
        }
        commit_real(&run, 0, 10, Kind::Periodic, 4);
        assert_eq!(latest(&run), (Some((0, 10)), vec![]), "{point}");
        assert_eq!(entries(&run, 0), ["step-000005", "step-000010"]);
        assert_eq!(load_file(&step10, "state.postcard").unwrap(), files(4)[2].1);
    }
}

/// Child half of `real_abort_at_each_crash_point`: runs only when the parent sets the run dir.
#[test]
fn crash_child() {
    let Some(run) = std::env::var_os("MULKI_TEST_CRASH_RUN") else {
        return;
    };
    let step: usize = std::env::var("MULKI_TEST_CRASH_STEP").unwrap().parse().unwrap();
    commit_real(Path::new(&run), 0, step, Kind::Periodic, 3);
    // Reaching here means the crash point never fired.
    std::process::exit(3);
}

#[cfg(unix)]
#[test]
fn real_abort_at_each_crash_point() {
    use std::os::unix::process::ExitStatusExt;
    let exe = std::env::current_exe().unwrap();
    for name in ["after-file-0", "after-file-2", "before-manifest", "after-manifest", "before-rename", "after-rename"] {
        for (step, replace) in [(20, false), (10, true)] {
            let run = temp_dir(&format!("abort-{name}-{step}"));
            commit_real(&run, 0, 5, Kind::Periodic, 1);
            commit_real(&run, 0, 10, Kind::Periodic, 2);
            // `ulimit -c 0`: no core file from the abort.
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg("ulimit -c 0; exec \"$0\" --exact crash_child --nocapture --test-threads=1")
                .arg(&exe)
                .env("MULKI_CRASH_AT", name)
                .env("MULKI_TEST_CRASH_RUN", run.as_os_str())
                .env("MULKI_TEST_CRASH_STEP", step.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert_eq!(status.signal(), Some(6), "{name}: child ended with {status}");

            let (found, _) = latest(&run);
            let expect = match (name, replace) {
                ("after-rename", false) => (0, 20),
                ("before-rename", true) => (0, 5),
                _ => (0, 10),
            };
            assert_eq!(found, Some(expect), "{name}, step {step}");
            let dir = checkpoint_dir(&run, 0, expect.1);
            let seed = match expect.1 {
                5 => 1,
                10 if !(replace && name == "after-rename") => 2,
                _ => 3,
            };
            assert_eq!(load_file(&dir, "model.safetensors").unwrap(), files(seed)[0].1, "{name}");
        }
    }
}

#[test]
fn replacing_an_existing_step() {
    let run = temp_dir("replace");
    let dir =
        commit(&run, 0, 10, Kind::Periodic, "first", &[("a.bin", b"old contents"), ("shared.bin", b"1")], &RealStorage)
            .unwrap();
    let again = commit(&run, 0, 10, Kind::TaskEnd, "second", &[("b.bin", b"new"), ("shared.bin", b"22")], &RealStorage)
        .unwrap();
    assert_eq!(dir, again);
    let m = verify(&dir).unwrap();
    assert_eq!((m.kind, m.config_hash.as_str()), (Kind::TaskEnd, "second"));
    assert_eq!(m.files.keys().collect::<Vec<_>>(), ["b.bin", "shared.bin"]);
    assert!(!dir.join("a.bin").exists(), "old files do not survive a replace");
    assert_eq!(load_file(&dir, "shared.bin").unwrap(), b"22");
    assert_eq!(entries(&run, 0), ["step-000010"]);
    assert_eq!(task_end(&run, 0), Some(dir));
}

#[test]
fn commit_refuses_bad_file_names() {
    let run = temp_dir("bad-names");
    for (list, reason) in [
        (vec![("MANIFEST.json", &b"x"[..])], "reserved"),
        (vec![("a/b", &b"x"[..])], "only ASCII"),
        (vec![("..", &b"x"[..])], "not a file name"),
        (vec![("", &b"x"[..])], "empty"),
        (vec![("a", &b"x"[..]), ("a", &b"y"[..])], "given twice"),
    ] {
        let e = commit(&run, 0, 1, Kind::Periodic, HASH, &list, &RealStorage).unwrap_err();
        assert!(matches!(e, CheckpointError::BadFileName { .. }), "{e}");
        assert!(e.to_string().contains(reason), "{e}");
    }
    assert_eq!(latest(&run), (None, vec![]));
    // No files at all is a valid (empty) checkpoint.
    let dir = commit(&run, 0, 1, Kind::Periodic, HASH, &[], &RealStorage).unwrap();
    assert!(verify(&dir).unwrap().files.is_empty());
}

/// Rewrites the manifest of `dir` through `edit` on its JSON.
fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(MANIFEST_FILE);
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn verify_reports_each_kind_of_bad_manifest() {
    let run = temp_dir("bad-manifest");
    let check = |step: usize, edit: &dyn Fn(&Path), want: &str| {
        let dir = commit_real(&run, 0, step, Kind::Periodic, 1);
        edit(&dir);
        let e = verify(&dir).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(want), "want {want:?} in {msg}");
        assert!(msg.contains(&format!("step-{step:06}")), "{msg}");
        e
    };
    let e = check(1, &|d| edit_manifest(d, |v| v["format"] = "other".into()), "unknown format \"other\"");
    assert!(matches!(e, CheckpointError::UnknownFormat { .. }));
    let e = check(2, &|d| edit_manifest(d, |v| v["version"] = 7.into()), "unsupported manifest version 7");
    assert!(matches!(e, CheckpointError::UnsupportedVersion { version: 7, .. }));
    check(3, &|d| fs::write(d.join(MANIFEST_FILE), b"{\"format\": ").unwrap(), "malformed manifest");
    check(4, &|d| edit_manifest(d, |v| v["kind"] = "weekly".into()), "malformed manifest");
    check(5, &|d| edit_manifest(d, |v| v["step"] = (-1).into()), "malformed manifest");
    check(6, &|d| edit_manifest(d, |v| v["step"] = 7.into()), "belongs at task-00/step-000007");
    check(
        7,
        &|d| edit_manifest(d, |v| v["files"]["../../x"] = v["files"]["state.postcard"].clone()),
        "bad checkpoint file name \"../../x\"",
    );
    check(
        8,
        &|d| edit_manifest(d, |v| v["files"]["state.postcard"]["sha256"] = "XYZ".into()),
        "64 lowercase hex digits",
    );
    check(
        9,
        &|d| fs::write(d.join(MANIFEST_FILE), vec![b' '; (1 << 20) + 1]).unwrap(),
        "more than the 1048576-byte limit",
    );
    check(
        10,
        &|d| fs::remove_file(d.join("state.postcard")).unwrap(),
        "\"state.postcard\" listed in the manifest is missing",
    );
    check(11, &|d| fs::write(d.join("state.postcard"), b"").unwrap(), "expected 77 bytes, got 0");
    check(12, &|d| fs::remove_file(d.join(MANIFEST_FILE)).unwrap(), "missing manifest");

    // A checkpoint copied under another step's name is refused.
    let good = commit_real(&run, 0, 13, Kind::Periodic, 1);
    let moved = run.join("task-00/step-000014");
    fs::rename(&good, &moved).unwrap();
    let e = verify(&moved).unwrap_err();
    assert!(matches!(e, CheckpointError::NameMismatch { .. }), "{e}");
}

#[test]
fn mangled_manifests_never_panic() {
    let run = temp_dir("mangled");
    let dir = commit_real(&run, 0, 1, Kind::Periodic, 1);
    let original = fs::read(dir.join(MANIFEST_FILE)).unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut m = original.clone();
        let at = (seed as usize) % m.len();
        match i % 3 {
            0 => m[at] = (seed >> 32) as u8,
            1 => m.truncate(at),
            _ => m.insert(at, b"{}[]\",:0-e9\\"[(seed >> 40) as usize % 12]),
        }
        fs::write(dir.join(MANIFEST_FILE), &m).unwrap();
        let _ = verify(&dir);
        let _ = find_latest(&run, Some(HASH));
        let _ = load_file(&dir, "model.safetensors");
        let _ = Manifest::parse(&m, Path::new("m"));
        let _ = decode_header::<(u32, String, Vec<f32>)>(&m, Path::new("m"));
    }
}

#[test]
fn rotation_keeps_last_two_periodic_per_task_and_every_task_end() {
    let run = temp_dir("rotate");
    for (task, step, kind) in [
        (0, 10, Kind::Periodic),
        (0, 20, Kind::Periodic),
        (0, 25, Kind::TaskEnd),
        (0, 30, Kind::Periodic),
        (0, 40, Kind::Periodic),
        (1, 5, Kind::Periodic),
        (1, 15, Kind::TaskEnd),
    ] {
        commit_real(&run, task, step, kind, step as u8);
    }
    let removed = rotate(&run, 0, 2, &RealStorage).unwrap();
    assert_eq!(removed, [checkpoint_dir(&run, 0, 20), checkpoint_dir(&run, 0, 10)]);
    assert_eq!(entries(&run, 0), ["step-000025", "step-000030", "step-000040"]);
    assert_eq!(entries(&run, 1), ["step-000005", "step-000015"]);

    commit_real(&run, 0, 50, Kind::Periodic, 50);
    assert_eq!(rotate(&run, 0, 2, &RealStorage).unwrap(), [checkpoint_dir(&run, 0, 30)]);
    assert_eq!(entries(&run, 0), ["step-000025", "step-000040", "step-000050"]);
    assert!(rotate(&run, 1, 2, &RealStorage).unwrap().is_empty());

    // A damaged newest periodic does not count towards the kept ones, and is left alone.
    flip_byte(&checkpoint_dir(&run, 0, 50).join("model.safetensors"), 0);
    assert!(rotate(&run, 0, 1, &RealStorage).unwrap().is_empty());
    assert_eq!(entries(&run, 0), ["step-000025", "step-000040", "step-000050"]);

    // keep 0 drops every periodic one; task ends stay.
    rotate(&run, 0, 0, &RealStorage).unwrap();
    rotate(&run, 1, 0, &RealStorage).unwrap();
    assert_eq!(entries(&run, 0), ["step-000025"]);
    assert_eq!(entries(&run, 1), ["step-000015"]);
    assert_eq!(task_end(&run, 0), Some(checkpoint_dir(&run, 0, 25)));
    assert_eq!(task_end(&run, 1), Some(checkpoint_dir(&run, 1, 15)));
    assert_eq!(task_end(&run, 2), None);
    assert_eq!(latest(&run), (Some((1, 15)), vec![]));

    // A damaged task end is not returned.
    flip_byte(&checkpoint_dir(&run, 1, 15).join("state.postcard"), 0);
    assert_eq!(task_end(&run, 1), None);
}

#[test]
fn rotation_clears_leftovers_from_interrupted_deletes_and_replaces() {
    let run = temp_dir("rotate-leftovers");
    commit_real(&run, 0, 10, Kind::Periodic, 1);
    fs::create_dir_all(run.join("task-00/step-000003.del")).unwrap();
    fs::create_dir_all(run.join("task-00/step-000010.old")).unwrap();
    fs::create_dir_all(run.join("task-00/step-000007.old")).unwrap();
    rotate(&run, 0, 2, &RealStorage).unwrap();
    // `.old` without its step may be the only copy of that step: kept.
    assert_eq!(entries(&run, 0), ["step-000007.old", "step-000010"]);
}

#[test]
fn header_round_trip_and_errors() {
    let file = Path::new("/run/task-00/step-000010/state.postcard");
    let value: (u32, String, Vec<f32>) = (7, "adam".into(), vec![1.5, -0.25, 3.0]);
    let bytes = encode_header(&value, file).unwrap();
    assert_eq!(&bytes[..8], b"MULKICKP");
    assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
    let back: (u32, String, Vec<f32>) = decode_header(&bytes, file).unwrap();
    assert_eq!(back, value);

    let decode = |b: &[u8]| decode_header::<(u32, String, Vec<f32>)>(b, file).unwrap_err();
    let named = |e: &CheckpointError| assert!(e.to_string().contains("state.postcard"), "{e}");

    let mut bad = bytes.clone();
    bad[0] = b'X';
    let e = decode(&bad);
    assert!(matches!(e, CheckpointError::BadMagic { .. }), "{e}");
    assert!(e.to_string().contains("bad magic"), "{e}");
    named(&e);
    let e = decode(b"PK\x03\x04");
    assert!(matches!(e, CheckpointError::BadMagic { .. }), "{e}");

    let mut v2 = bytes.clone();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    let e = decode(&v2);
    assert!(matches!(e, CheckpointError::UnsupportedVersion { version: 2, .. }), "{e}");
    assert!(e.to_string().contains("unsupported state header version 2"), "{e}");
    named(&e);

    for cut in [0, 5, 8, 10] {
        let e = decode(&bytes[..cut]);
        assert!(matches!(e, CheckpointError::Truncated { .. }), "cut {cut}: {e}");
    }
    for cut in [12, 13, bytes.len() - 1] {
        let e = decode(&bytes[..cut]);
        assert!(matches!(e, CheckpointError::Truncated { .. }), "cut {cut}: {e}");
        assert!(e.to_string().contains("truncated"), "{e}");
        named(&e);
    }

    let mut trailing = bytes.clone();
    trailing.push(0);
    let e = decode(&trailing);
    assert!(matches!(e, CheckpointError::CorruptPayload { .. }), "{e}");
    assert!(e.to_string().contains("1 trailing bytes"), "{e}");

    // Invalid UTF-8 in the string.
    let mut corrupt = bytes.clone();
    corrupt[14] = 0xFF;
    let e = decode(&corrupt);
    assert!(matches!(e, CheckpointError::CorruptPayload { .. }), "{e}");
    named(&e);
}
