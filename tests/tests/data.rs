//! Datasets and loading: ImageFolder / CSV / IDX listing and their errors, `data check`,
//! few-shot subsets, RandomResizedCrop, the epoch permutation, the parallel prefetching loader
//! (thread-count independence, bad images) and ZSCL's reference set. Datasets are written to a
//! temp dir per test.
use std::path::{Path, PathBuf};

use mulki_host::data::codec::{ImageFormat, Rgb, RgbImage};
use mulki_host::data::{
    self, augment_rng, check, epoch_permutation, few_shot, sample_indices, BatchSpec, DataError, EpochSampler, Item,
    Loader, LoaderConfig, RandomResizedCrop, ReferenceSet, Source, Split, Transform,
};
use mulki_host::run::config::{DatasetFormat, TaskConfig};
use mulki_tests::scratch::Scratch;
use mulki_tests::Rng;

fn temp_dir(test: &str) -> Scratch {
    Scratch::new("data", test)
}

/// A `w`×`h` PNG whose pixels depend on `seed`.
fn write_png(path: &Path, w: u32, h: u32, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 7 + y * 13) as u8;
        Rgb([v ^ seed, v.wrapping_add(seed), seed.wrapping_mul(3) ^ (x as u8)])
    });
    img.save_with_format(path, ImageFormat::Png).unwrap();
}

fn task(root: &Path, format: DatasetFormat, classes: &[&str]) -> TaskConfig {
    TaskConfig {
        name: "t".into(),
        root: root.to_path_buf(),
        format,
        train_split: "train".into(),
        test_split: "test".into(),
        classes: classes.iter().map(|c| c.to_string()).collect(),
        folders: None,
        train_templates: vec!["a photo of a {}.".into()],
        eval_templates: vec!["a photo of a {}.".into()],
        lr: None,
        iterations: None,
    }
}

fn paths(split: &Split) -> Vec<String> {
    split
        .items
        .iter()
        .map(|it| match &it.source {
            Source::File(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
            Source::Idx { index, .. } => format!("#{index}"),
        })
        .collect()
}

/// root/<split>/<class>/<n>.png for `counts[c]` images of class c.
fn image_folder(root: &Path, split: &str, classes: &[&str], counts: &[usize]) {
    for (c, (name, &n)) in classes.iter().zip(counts).enumerate() {
        for i in 0..n {
            let p = root.join(split).join(name).join(format!("img{i}.png"));
            write_png(&p, 20 + i as u32, 16 + c as u32, (c * 31 + i) as u8);
        }
    }
}

// ---------------------------------------------------------------- ImageFolder

#[test]
fn image_folder_lists_sorted_by_class_then_path() {
    let root = temp_dir("folder_list");
    image_folder(&root, "train", &["cat", "dog"], &[3, 2]);
    // Extensions in any case count; other files and hidden folders do not.
    write_png(&root.join("train/dog/Zeta.PNG"), 8, 8, 1);
    write_png(&root.join("train/dog/alpha.JpEg"), 8, 8, 2);
    std::fs::write(root.join("train/dog/notes.txt"), "x").unwrap();
    std::fs::create_dir_all(root.join("train/.cache")).unwrap();
    let t = task(&root, DatasetFormat::ImageFolder, &["cat", "dog"]);
    let s = Split::train(&t).unwrap();
    assert_eq!(s.classes, 2);
    assert_eq!(paths(&s), ["img0.png", "img1.png", "img2.png", "Zeta.PNG", "alpha.JpEg", "img0.png", "img1.png"]);
    let labels: Vec<usize> = s.items.iter().map(|i| i.label).collect();
    assert_eq!(labels, [0, 0, 0, 1, 1, 1, 1]);
    assert_eq!(s.class_counts(), [3, 4]);

    // `folders` renames the class folders; labels follow the config's order.
    let mut t2 = task(&root, DatasetFormat::ImageFolder, &["a dog", "a cat"]);
    t2.folders = Some(vec!["dog".into(), "cat".into()]);
    let s2 = Split::train(&t2).unwrap();
    assert_eq!(s2.class_counts(), [4, 3]);
    assert_eq!(s2.items[0].label, 0);
}

#[test]
fn image_folder_errors_name_what_is_wrong() {
    let root = temp_dir("folder_errors");
    let missing = root.join("nowhere");
    let t = task(&missing, DatasetFormat::ImageFolder, &["cat"]);
    let e = Split::train(&t).unwrap_err();
    assert!(matches!(e, DataError::MissingDataset { .. }), "{e}");
    assert!(e.to_string().contains("nowhere"), "{e}");

    image_folder(&root, "train", &["cat", "dog"], &[1, 1]);
    let t = task(&root, DatasetFormat::ImageFolder, &["cat", "dog"]);
    let e = Split::test(&t).unwrap_err();
    assert!(matches!(e, DataError::MissingSplit { .. }), "{e}");
    assert!(e.to_string().contains("test"), "{e}");

    // Empty class folder.
    std::fs::create_dir_all(root.join("train/bird")).unwrap();
    std::fs::write(root.join("train/bird/readme.md"), "no images").unwrap();
    let t = task(&root, DatasetFormat::ImageFolder, &["cat", "dog", "bird"]);
    let e = Split::train(&t).unwrap_err();
    assert!(matches!(e, DataError::EmptyClass { .. }), "{e}");
    assert!(e.to_string().contains("bird"), "{e}");

    // Mismatch on both sides, all listed in one error.
    image_folder(&root, "train", &["Fish", "cow"], &[1, 1]);
    let t = task(&root, DatasetFormat::ImageFolder, &["cat", "dog", "bird", "fish", "horse"]);
    let e = Split::train(&t).unwrap_err();
    let msg = e.to_string();
    match &e {
        DataError::ClassFolders { missing, extra, .. } => {
            assert_eq!(missing, &["fish", "horse"]);
            assert_eq!(extra, &["Fish", "cow"]);
        }
        other => panic!("{other}"),
    }
    for word in ["fish", "horse", "Fish", "cow", "missing", "extra"] {
        assert!(msg.contains(word), "{word} not in {msg}");
    }
}

#[test]
fn check_reports_instead_of_failing() {
    let root = temp_dir("check");
    image_folder(&root, "train", &["cat", "dog", "extra"], &[2, 3, 1]);
    image_folder(&root, "test", &["cat"], &[1]);
    let t = task(&root, DatasetFormat::ImageFolder, &["cat", "dog"]);
    let r = check(&t).unwrap();
    assert_eq!(r.splits.len(), 2);
    let (train, test) = (&r.splits[0], &r.splits[1]);
    assert_eq!(train.per_class, [2, 3]);
    assert_eq!(train.extra, [root.join("train").join("extra")]);
    assert!(train.missing.is_empty());
    assert_eq!(test.per_class, [1, 0]);
    assert_eq!(test.missing, [root.join("test").join("dog")]);
    assert!(!r.is_clean());
    let text = r.to_string();
    assert!(text.contains("extra") && text.contains("missing") && text.contains("PROBLEMS"));

    // CSV: files the manifest lists but that are absent.
    let csv_root = temp_dir("check_csv");
    write_png(&csv_root.join("a.png"), 4, 4, 0);
    std::fs::write(csv_root.join("train.csv"), "path,label\na.png,0\nb.png,1\n").unwrap();
    std::fs::write(csv_root.join("test.csv"), "a.png,1\n").unwrap();
    let t = task(&csv_root, DatasetFormat::Csv, &["x", "y"]);
    let r = check(&t).unwrap();
    assert_eq!(r.splits[0].per_class, [1, 0]);
    assert_eq!(r.splits[0].missing, [csv_root.join("b.png")]);
    assert_eq!(r.splits[1].per_class, [0, 1]);
    assert!(check(&task(&root.join("none"), DatasetFormat::Csv, &["x"])).is_err());
}

// ---------------------------------------------------------------- CSV

fn csv_task(root: &Path, text: &[u8], classes: usize) -> Result<Split, DataError> {
    std::fs::write(root.join("train.csv"), text).unwrap();
    let names: Vec<String> = (0..classes).map(|c| format!("c{c}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Split::train(&task(root, DatasetFormat::Csv, &names))
}

#[test]
fn csv_parses_rfc4180() {
    let root = temp_dir("csv_ok");
    let text = "\u{feff}path,label\r\n\
                imgs/a.png,0\r\n\
                \"imgs/with, comma.png\",2\r\n\
                \r\n\
                \"imgs/say \"\"hi\"\".jpg\", 1 \n\
                \"multi\nline.png\",1\n\
                /abs/x.png,0";
    let s = csv_task(&root, text.as_bytes(), 3).unwrap();
    let files: Vec<PathBuf> = s
        .items
        .iter()
        .map(|i| match &i.source {
            Source::File(p) => p.clone(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        files,
        [
            root.join("imgs/a.png"),
            root.join("imgs/with, comma.png"),
            root.join("imgs/say \"hi\".jpg"),
            root.join("multi\nline.png"),
            PathBuf::from("/abs/x.png"),
        ]
    );
    let labels: Vec<usize> = s.items.iter().map(|i| i.label).collect();
    assert_eq!(labels, [0, 2, 1, 1, 0]);
    // No header.
    let s = csv_task(&root, b"a.png,1\nb.png,0\n", 2).unwrap();
    assert_eq!(s.len(), 2);
}

#[test]
fn csv_errors_name_file_and_line() {
    let root = temp_dir("csv_err");
    let cases: &[(&[u8], usize, &str)] = &[
        (b"path,label\na.png,0\nb.png\n", 3, "expected 2 fields"),
        (b"a.png,0,extra\n", 1, "found 3"),
        (b"a.png,0\n\"b.png,1\nc.png,0\n", 2, "unterminated"),
        (b"a.png,0\n\"q\nq.png\",0\nc.png,x\n", 4, "not a non-negative integer"),
        (b"a.png,0\nb.png,-1\n", 2, "non-negative"),
        (b"a.png,0\n\"b\"x.png,0\n", 2, "after a closing"),
        (b"a\"b.png,0\n", 1, "unexpected"),
        (b",1\n", 1, "empty path"),
        (b"a.png,0\n\xff\xfe.png,1\n", 2, "UTF-8"),
    ];
    for (text, line, what) in cases {
        let e = csv_task(&root, text, 2).unwrap_err();
        let msg = e.to_string();
        let file = root.join("train.csv").display().to_string();
        assert!(msg.contains(&format!("{file}:{line}:")), "{msg}");
        assert!(msg.contains(what), "{what}: {msg}");
    }
    let e = csv_task(&root, b"a.png,0\nb.png,5\n", 2).unwrap_err();
    assert!(matches!(e, DataError::LabelOutOfRange { label: 5, .. }), "{e}");
    assert!(e.to_string().contains("line 2") && e.to_string().contains("train.csv"));
    let e = csv_task(&root, b"path,label\n", 2).unwrap_err();
    assert!(matches!(e, DataError::NoImages { .. }), "{e}");
    let e = Split::test(&task(&root, DatasetFormat::Csv, &["a"])).unwrap_err();
    assert!(e.to_string().contains("test.csv"), "{e}");
}

// ---------------------------------------------------------------- IDX

fn idx_images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        v.extend(d.to_be_bytes());
    }
    v.extend((0..count * rows * cols).map(|i| (i * 37 % 251) as u8));
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend((labels.len() as u32).to_be_bytes());
    v.extend(labels);
    v
}

/// A gzip member holding `bytes` in stored (uncompressed) deflate blocks.
fn gz(bytes: &[u8]) -> Vec<u8> {
    let crc = !bytes.iter().fold(!0u32, |mut c, &b| {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
        c
    });
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let chunks: Vec<&[u8]> = bytes.chunks(65535).collect();
    for (i, c) in chunks.iter().enumerate() {
        out.push(u8::from(i + 1 == chunks.len()));
        let len = c.len() as u16;
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend(crc.to_le_bytes());
    out.extend((bytes.len() as u32).to_le_bytes());
    out
}

#[test]
fn idx_plain_and_gz() {
    let root = temp_dir("idx_ok");
    std::fs::write(root.join("train-images-idx3-ubyte"), idx_images(5, 3, 4)).unwrap();
    std::fs::write(root.join("train-labels-idx1-ubyte"), idx_labels(&[0, 2, 1, 1, 0])).unwrap();
    std::fs::write(root.join("test-images-idx3-ubyte.gz"), gz(&idx_images(2, 2, 2))).unwrap();
    std::fs::write(root.join("test-labels-idx1-ubyte.gz"), gz(&idx_labels(&[2, 0]))).unwrap();
    let t = task(&root, DatasetFormat::Idx, &["a", "b", "c"]);
    let s = Split::train(&t).unwrap();
    assert_eq!(s.len(), 5);
    assert_eq!(s.class_counts(), [2, 2, 1]);
    let img = s.items[1].load().unwrap();
    assert_eq!(img.dimensions(), (4, 3));
    // Record 1 starts at pixel 12; gray replicated to RGB.
    let first = (12 * 37 % 251) as u8;
    assert_eq!(img.get_pixel(0, 0).0, [first; 3]);
    assert!(s.items[1].describe().contains("record 1"));
    let s = Split::test(&t).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s.items[0].label, 2);
}

#[test]
fn idx_errors_name_file_and_offset_and_never_panic() {
    let root = temp_dir("idx_err");
    let t = task(&root, DatasetFormat::Idx, &["a", "b"]);
    let img_path = root.join("train-images-idx3-ubyte");
    let lab_path = root.join("train-labels-idx1-ubyte");
    let set = |images: &[u8], labels: &[u8]| {
        std::fs::write(&img_path, images).unwrap();
        std::fs::write(&lab_path, labels).unwrap();
        Split::train(&t)
    };
    let good = idx_images(3, 2, 2);
    let labels = idx_labels(&[0, 1, 1]);
    assert!(set(&good, &labels).is_ok());

    let msg = |r: Result<Split, DataError>| r.unwrap_err().to_string();
    let m = msg(set(&good[..good.len() - 3], &labels));
    assert!(m.contains("train-images-idx3-ubyte") && m.contains("offset 25") && m.contains("truncated"), "{m}");
    let mut bad = good.clone();
    bad[2] = 9;
    let m = msg(set(&bad, &labels));
    assert!(m.contains("offset 0") && m.contains("magic"), "{m}");
    let m = msg(set(&good[..10], &labels));
    assert!(m.contains("offset 10") && m.contains("header"), "{m}");
    let mut long = good.clone();
    long.push(0);
    assert!(msg(set(&long, &labels)).contains("after the last record"));
    let m = msg(set(&idx_images(1, 4097, 1), &idx_labels(&[0])));
    assert!(m.contains("offset 8") && m.contains("4097"), "{m}");
    let mut huge = idx_images(0, 1, 1);
    huge[4..8].copy_from_slice(&(1u32 << 27).to_be_bytes());
    assert!(msg(set(&huge, &labels)).contains("records (at most"));
    let m = msg(set(&good, &idx_labels(&[0, 1])));
    assert!(m.contains("3 images") && m.contains("2 labels"), "{m}");
    let m = msg(set(&good, &idx_labels(&[0, 7, 1])));
    assert!(m.contains("train-labels-idx1-ubyte") && m.contains("record 1") && m.contains("label 7"), "{m}");
    let m = msg(set(&good, &good));
    assert!(m.contains("train-labels-idx1-ubyte") && m.contains("magic"), "{m}");

    // Every truncation of a valid file is an error, never a panic; so is every truncated gzip.
    for n in 0..good.len() {
        assert!(set(&good[..n], &labels).is_err(), "prefix {n}");
    }
    std::fs::remove_file(&img_path).unwrap();
    let z = gz(&good);
    for n in 0..z.len() {
        std::fs::write(root.join("train-images-idx3-ubyte.gz"), &z[..n]).unwrap();
        assert!(Split::train(&t).is_err(), "gz prefix {n}");
    }
    std::fs::write(root.join("train-images-idx3-ubyte.gz"), &z).unwrap();
    assert_eq!(Split::train(&t).unwrap().len(), 3);
    std::fs::remove_file(root.join("train-images-idx3-ubyte.gz")).unwrap();
    let e = Split::train(&t).unwrap_err();
    assert!(matches!(e, DataError::MissingSplit { .. }), "{e}");
}

// ---------------------------------------------------------------- few-shot

fn synthetic_split(per_class: &[usize]) -> Split {
    let mut items = Vec::new();
    // Interleaved labels, so "sorted by original order" is visible.
    let total: usize = per_class.iter().sum();
    let mut left = per_class.to_vec();
    let mut c = 0;
    while items.len() < total {
        if left[c] > 0 {
            left[c] -= 1;
            items.push(Item { source: Source::File(PathBuf::from(format!("{}.png", items.len()))), label: c });
        }
        c = (c + 1) % per_class.len();
    }
    Split { items, classes: per_class.len() }
}

#[test]
fn few_shot_is_deterministic_and_balanced() {
    let s = synthetic_split(&[10, 3, 7, 20]);
    let a = few_shot(&s, 4, 42, 0);
    assert_eq!(a, few_shot(&s, 4, 42, 0));
    assert_eq!(a.class_counts(), [4, 3, 4, 4]);
    // In the split's order, each item from the split.
    let pos: Vec<usize> = a.items.iter().map(|it| s.items.iter().position(|x| x == it).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
    assert_ne!(a, few_shot(&s, 4, 43, 0));
    assert_ne!(a, few_shot(&s, 4, 42, 1));
    // More shots than items: everything.
    assert_eq!(few_shot(&s, 100, 1, 0), s);
    // Draws cover a class over many seeds (no item is never picked).
    let mut seen = [false; 20];
    for seed in 0..60 {
        for it in few_shot(&s, 2, seed, 0).items.iter().filter(|i| i.label == 3) {
            let i = s.items.iter().filter(|x| x.label == 3).position(|x| x == it).unwrap();
            seen[i] = true;
        }
    }
    assert!(seen.iter().all(|&b| b));
}

// ---------------------------------------------------------------- RandomResizedCrop

#[test]
fn random_resized_crop_is_deterministic_and_in_bounds() {
    let rrc = RandomResizedCrop::clip(32);
    for (w, h) in [(320, 213), (100, 100), (120, 100), (50, 400), (7, 9), (1, 1)] {
        for sample in 0..200u64 {
            let b = rrc.params(w, h, &mut augment_rng(5, 1, sample));
            assert_eq!(b, rrc.params(w, h, &mut augment_rng(5, 1, sample)));
            assert!(b.width >= 1 && b.height >= 1);
            assert!(b.left + b.width <= w && b.top + b.height <= h, "{w}x{h}: {b:?}");
            let frac = (b.width * b.height) as f64 / (w * h) as f64;
            let ratio = b.width as f64 / b.height as f64;
            if (w, h) == (100, 100) || (w, h) == (120, 100) {
                // Rounding w and h moves area and ratio a little off the sampled range.
                assert!((0.88..=1.0).contains(&frac), "{w}x{h}: {b:?} area {frac}");
                assert!((0.74..=1.35).contains(&ratio), "{w}x{h}: {b:?} ratio {ratio}");
            }
        }
    }
    // Beyond an aspect of about 1.4, 90% of the area cannot have a ratio within 4/3: every try
    // fails and torchvision falls back to the central 4/3 crop (h = 37, w = round(37 · 4/3)).
    let b = rrc.params(1000, 37, &mut Rng::new(1));
    assert_eq!((b.top, b.left, b.height, b.width), (0, 475, 37, 49));
    let b = rrc.params(320, 213, &mut Rng::new(2));
    assert_eq!((b.top, b.left, b.height, b.width), (0, 18, 213, 284));
    // Different counters give different crops.
    let boxes: std::collections::BTreeSet<_> = (0..50)
        .map(|i| {
            let b = rrc.params(120, 100, &mut augment_rng(5, 1, i));
            (b.top, b.left, b.height, b.width)
        })
        .collect();
    assert!(boxes.len() > 40, "{}", boxes.len());
    let img = RgbImage::from_fn(64, 48, |x, y| Rgb([x as u8, y as u8, 7]));
    let a = rrc.crop(&img, &mut augment_rng(1, 2, 3));
    assert_eq!(a.dimensions(), (32, 32));
    assert_eq!(a, rrc.crop(&img, &mut augment_rng(1, 2, 3)));
}

// ---------------------------------------------------------------- sampling order

#[test]
fn epoch_permutation_properties() {
    for n in [1usize, 2, 7, 100] {
        for e in 0..5 {
            let mut p = epoch_permutation(n, 9, 3, e);
            assert_eq!(p, epoch_permutation(n, 9, 3, e));
            p.sort_unstable();
            assert_eq!(p, (0..n).collect::<Vec<_>>());
        }
    }
    assert_ne!(epoch_permutation(100, 9, 3, 0), epoch_permutation(100, 9, 3, 1));
    assert_ne!(epoch_permutation(100, 9, 3, 0), epoch_permutation(100, 9, 4, 0));
    assert_ne!(epoch_permutation(100, 9, 3, 0), epoch_permutation(100, 10, 3, 0));

    // Batches of 7 over 10 items: position g = step * 7 + i is (epoch g / 10, slot g % 10).
    let (n, b) = (10usize, 7usize);
    let mut sampler = EpochSampler::new(n, 9, 3);
    let mut all = Vec::new();
    for step in 0..10u64 {
        let batch = sampler.batch(b, step);
        assert_eq!(batch, sample_indices(n, b, step, 9, 3));
        all.extend(batch);
    }
    for (e, chunk) in all.chunks(n).enumerate() {
        assert_eq!(chunk, epoch_permutation(n, 9, 3, e as u64).as_slice());
    }
    // Random access (resume) agrees with sequential use.
    assert_eq!(EpochSampler::new(n, 9, 3).batch(b, 7), sampler.batch(b, 7));
    assert!(sample_indices(0, 4, 0, 1, 1).is_empty());
}

// ---------------------------------------------------------------- loader

fn loader_split(root: &Path) -> Split {
    let classes = ["a", "b", "c"];
    for (c, name) in classes.iter().enumerate() {
        for i in 0..4 {
            let (w, h) = (30 + 11 * i as u32, 25 + 7 * c as u32);
            write_png(&root.join("train").join(name).join(format!("{i}.png")), w, h, (c * 4 + i) as u8);
        }
    }
    Split::train(&task(root, DatasetFormat::ImageFolder, &classes)).unwrap()
}

fn cfg(transform: Transform, threads: usize, skip: bool) -> LoaderConfig {
    LoaderConfig { transform, threads, skip_bad_images: skip }
}

#[test]
fn loader_is_independent_of_threads_and_prefetch() {
    let root = temp_dir("loader");
    let split = loader_split(&root);
    let n = split.len();
    for transform in [Transform::Eval { size: 24 }, Transform::Train(RandomResizedCrop::clip(24))] {
        let one = Loader::new(split.clone(), cfg(transform, 1, false)).unwrap();
        let mut three = Loader::new(split.clone(), cfg(transform, 3, false)).unwrap();
        let specs: Vec<BatchSpec> = (0..4u64)
            .map(|step| {
                let idx = sample_indices(n, 5, step, 11, 2);
                BatchSpec::train(&idx, 11, 2, step * 5)
            })
            .collect();
        for s in &specs {
            three.request(s.clone());
        }
        assert_eq!(three.pending(), 4);
        for s in &specs {
            let a = one.load(s).unwrap();
            assert_eq!(a.pixels.len(), 5 * 3 * 24 * 24);
            assert!(a.pixels.iter().all(|x| x.is_finite()));
            let want: Vec<usize> = s.samples.iter().map(|x| x.index).collect();
            assert_eq!(a.indices, want);
            let labels: Vec<usize> = want.iter().map(|&i| split.items[i].label).collect();
            assert_eq!(a.labels, labels);
            assert!(a.warnings.is_empty());
            assert_eq!(three.take().unwrap(), a, "{transform:?}");
            assert_eq!(three.load(s).unwrap(), a);
        }
        assert!(matches!(three.take(), Err(DataError::Loader(_))));
    }
    // Eval ignores the RNG; train does not.
    let idx = [0, 5, 9];
    let ev = Loader::new(split.clone(), cfg(Transform::Eval { size: 16 }, 2, false)).unwrap();
    assert_eq!(
        ev.load(&BatchSpec::eval(&idx)).unwrap().pixels,
        ev.load(&BatchSpec::train(&idx, 1, 1, 0)).unwrap().pixels
    );
    let tr = Loader::new(split.clone(), cfg(Transform::Train(RandomResizedCrop::clip(16)), 2, false)).unwrap();
    assert_ne!(
        tr.load(&BatchSpec::train(&idx, 1, 1, 0)).unwrap().pixels,
        tr.load(&BatchSpec::train(&idx, 1, 1, 3)).unwrap().pixels
    );
    // The eval batch equals the single-image eval transform.
    let b = ev.load(&BatchSpec::eval(&[4])).unwrap();
    let Source::File(p) = &split.items[4].source else { unreachable!() };
    assert_eq!(b.pixels, mulki_host::image::load_eval(p, 16).unwrap());
    let e = ev.load(&BatchSpec::eval(&[n])).unwrap_err();
    assert!(e.to_string().contains("requested"), "{e}");
}

#[test]
fn bad_images_fail_or_are_replaced_deterministically() {
    let root = temp_dir("bad_images");
    let split = loader_split(&root);
    let Source::File(bad) = split.items[5].source.clone() else { unreachable!() };
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    let spec = BatchSpec::train(&[4, 5, 6], 3, 0, 0);
    let strict = Loader::new(split.clone(), cfg(Transform::Train(RandomResizedCrop::clip(16)), 2, false)).unwrap();
    let e = strict.load(&spec).unwrap_err();
    assert!(e.to_string().contains(&bad.display().to_string()), "{e}");

    for threads in [1, 3] {
        let mut lenient =
            Loader::new(split.clone(), cfg(Transform::Train(RandomResizedCrop::clip(16)), threads, true)).unwrap();
        let b = lenient.load(&spec).unwrap();
        assert_eq!(b.indices, [4, 6, 6]);
        assert_eq!(b.labels, [1, 1, 1]);
        assert_eq!(b.warnings.len(), 1);
        assert!(b.warnings[0].contains(&bad.display().to_string()), "{}", b.warnings[0]);
        // The replacement uses the slot's own RNG: slot 1 is item 6 with sample 1's crop.
        let per = 3 * 16 * 16;
        let alone = lenient.load(&BatchSpec::train(&[6, 6], 3, 0, 1)).unwrap();
        assert_eq!(&b.pixels[per..2 * per], &alone.pixels[..per]);
        lenient.request(spec.clone());
        assert_eq!(lenient.take().unwrap(), b);
    }
    // Nothing readable at all: the error.
    let only_bad = Split { items: vec![split.items[5].clone()], classes: 3 };
    let l = Loader::new(only_bad, cfg(Transform::Eval { size: 8 }, 1, true)).unwrap();
    assert!(l.load(&BatchSpec::eval(&[0])).is_err());
}

// ---------------------------------------------------------------- reference set

#[test]
fn reference_set_pairs_sorted_images_with_lines() {
    let root = temp_dir("reference");
    let imgs = root.join("images");
    for p in ["b.png", "a.jpg", "sub/c.PNG", "sub/deeper/a.png"] {
        write_png(&imgs.join(p), 6, 6, 1);
    }
    std::fs::write(imgs.join("notes.txt"), "skip me").unwrap();
    let caps = root.join("captions.txt");
    std::fs::write(&caps, "first\r\nsecond\nthird\nfourth\n").unwrap();
    let r = ReferenceSet::load(&imgs, &caps).unwrap();
    let rel: Vec<String> =
        r.images.iter().map(|p| p.strip_prefix(&imgs).unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(rel, ["a.jpg", "b.png", "sub/c.PNG", "sub/deeper/a.png"]);
    assert_eq!(r.captions, ["first", "second", "third", "fourth"]);
    let s = r.split();
    assert_eq!(s.len(), 4);
    assert_eq!(s.items[2].label, 2);
    let mut sampler = r.sampler(7, 0);
    let batch = sampler.batch(4, 0);
    let mut sorted = batch.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2, 3]);
    assert_eq!(batch, r.sampler(7, 0).batch(4, 0));

    std::fs::write(&caps, "one\ntwo\nthree\n").unwrap();
    let e = ReferenceSet::load(&imgs, &caps).unwrap_err();
    let m = e.to_string();
    assert!(m.contains("images") && m.contains("captions.txt") && m.contains(" 4 ") && m.contains(" 3 "), "{m}");
    std::fs::write(&caps, "one\n\nthree\nfour\n").unwrap();
    let m = ReferenceSet::load(&imgs, &caps).unwrap_err().to_string();
    assert!(m.contains("captions.txt:2") && m.contains("empty caption"), "{m}");
    assert!(ReferenceSet::load(&root.join("none"), &caps).is_err());
}

#[test]
fn load_eval_still_works_through_image_module() {
    let root = temp_dir("load_eval");
    let p = root.join("x.png");
    write_png(&p, 40, 30, 3);
    let v = mulki_host::image::load_eval(&p, 16).unwrap();
    assert_eq!(v.len(), 3 * 16 * 16);
    let img = data::load_rgb8(&p).unwrap();
    assert_eq!(v, mulki_host::image::eval_transform(&img, 16));
    let bad = root.join("bad.png");
    std::fs::write(&bad, b"nope").unwrap();
    let e = mulki_host::image::load_eval(&bad, 16).unwrap_err();
    assert!(e.to_string().contains("bad.png"));
}

#[test]
fn extreme_aspect_ratios_stay_cheap() {
    use mulki_host::data::transform::eval_crop;
    // 3 × 100000: the resized long side would be 7.5 million pixels; only the crop is computed.
    let img = RgbImage::from_pixel(3, 100_000, Rgb([10, 200, 30]));
    let t = std::time::Instant::now();
    let out = eval_crop(&img, 224);
    assert_eq!(out.dimensions(), (224, 224));
    assert!(out.pixels().all(|p| p.0 == [10, 200, 30]));
    let out = eval_crop(&RgbImage::from_pixel(100_000, 1, Rgb([5, 6, 7])), 32);
    assert!(out.pixels().all(|p| p.0 == [5, 6, 7]));
    assert!(t.elapsed().as_secs_f64() < 5.0, "{:?}", t.elapsed());
}

#[test]
fn pairs_tsv_parses_and_names_file_and_line() {
    use mulki_host::data::pairs::{parse_pairs, PairSet};
    let root = temp_dir("pairs");
    let file = root.join("pairs.tsv");
    let ok = parse_pairs("a.png\tgrinning face\r\nsub/b.png\tkeycap: *\n", &file).unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!(ok[0].image, root.join("a.png"));
    assert_eq!((ok[1].image.clone(), ok[1].caption.as_str()), (root.join("sub/b.png"), "keycap: *"));
    for (text, line, want) in [
        ("a.png\tx\nno tab here\n", 2, "expected `path<TAB>caption`"),
        ("\tx\n", 1, "empty image path"),
        ("a.png\tx\nb.png\t  \n", 2, "empty caption"),
    ] {
        let msg = parse_pairs(text, &file).unwrap_err().to_string();
        assert_eq!(msg, format!("{}:{line}: {want}", file.display()), "{text:?}");
    }
    assert!(parse_pairs("", &file).unwrap_err().to_string().contains("no images"));

    // Loaded: each image through the eval transform, in file order; a missing image is named.
    write_png(&root.join("a.png"), 8, 8, 1);
    write_png(&root.join("b.png"), 40, 20, 2);
    std::fs::write(&file, "a.png\tone\nb.png\ttwo\n").unwrap();
    let set = PairSet::load(&file, 16).unwrap();
    assert_eq!((set.len(), set.captions.clone()), (2, vec!["one".to_string(), "two".to_string()]));
    let b = mulki_host::data::load_rgb8(&root.join("b.png")).unwrap();
    assert_eq!(set.image(1), &mulki_host::data::transform::eval_transform(&b, 16)[..]);
    std::fs::write(&file, "a.png\tone\nc.png\tthree\n").unwrap();
    let msg = PairSet::load(&file, 16).unwrap_err().to_string();
    assert!(msg.starts_with(&root.join("c.png").display().to_string()), "{msg}");
}
