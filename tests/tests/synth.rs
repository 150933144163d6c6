//! The built-in synthetic world (`mulki_host::synth`): determinism, split disjointness, class
//! balance, caption truthfulness and soft targets, the word tokenizer, the `DataSource` batches,
//! and a learnability probe: nearest-class-mean on simple hand features must read every task's
//! attribute through its domain shift.

use std::collections::HashSet;

use mulki_core::rng::Rng;
use mulki_host::run::source::{DataSource, Split};
use mulki_host::synth::caption::{caption, matches, soft_targets, soft_targets_text};
use mulki_host::synth::render::render;
use mulki_host::synth::tasks::{default_stream, item, scene, task, Attribute, StreamSize, TaskSpec};
use mulki_host::synth::vocab::{WordVocab, PAD_ID, UNK_ID};
use mulki_host::synth::world::{Draw, Scene, Shape};
use mulki_host::synth::{pretrain_batch, pretrain_pair, SynthSource};
use mulki_host::tokenizer::Tokenize;

const SIDE: usize = 32;

fn all_tasks() -> Vec<TaskSpec> {
    [
        Attribute::NovelShape,
        Attribute::Shape,
        Attribute::Position,
        Attribute::Pattern,
        Attribute::Count,
        Attribute::Colour,
        Attribute::Size,
    ]
    .into_iter()
    .map(task)
    .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    for t in all_tasks() {
        for split in [Split::Train, Split::Test] {
            for i in [0, 7, 123] {
                let a = item(&t, split, i, 5, SIDE);
                assert_eq!(a, item(&t, split, i, 5, SIDE), "{} item {i}", t.name);
                assert_ne!(a.0, item(&t, split, i, 6, SIDE).0, "{} seed", t.name);
            }
        }
    }
    let a = pretrain_batch(3, 11, 16, SIDE);
    assert_eq!(a, pretrain_batch(3, 11, 16, SIDE));
    assert_ne!(a.pixels, pretrain_batch(3, 12, 16, SIDE).pixels);
    // TrainEval is the training split.
    let t = task(Attribute::Colour);
    assert_eq!(item(&t, Split::Train, 9, 1, SIDE), item(&t, Split::TrainEval, 9, 1, SIDE));
}

#[test]
fn train_and_test_are_disjoint() {
    for t in all_tasks() {
        let train: HashSet<Vec<u8>> = (0..300).map(|i| item(&t, Split::Train, i, 1, SIDE).0).collect();
        assert!(train.len() > 295, "{}: training images repeat", t.name);
        for i in 0..300 {
            let (rgb, _) = item(&t, Split::Test, i, 1, SIDE);
            assert!(!train.contains(&rgb), "{}: test image {i} is a training image", t.name);
        }
    }
}

#[test]
fn classes_are_balanced_and_labels_name_the_attribute() {
    for t in all_tasks() {
        let k = t.classes.len();
        for (split, n) in [(Split::Train, t.train_size), (Split::Test, t.test_size)] {
            let mut counts = vec![0usize; k];
            for i in 0..n {
                let (s, y) = scene(&t, split, i, 2);
                counts[y as usize] += 1;
                let name = match t.attribute {
                    Attribute::NovelShape | Attribute::Shape => s.shape.name().to_string(),
                    Attribute::Colour => s.colour.name().to_string(),
                    Attribute::Pattern => s.pattern.name().to_string(),
                    Attribute::Size => s.size.name().to_string(),
                    Attribute::Position => s.position.map(|p| p.phrase()).unwrap_or("").to_string(),
                    Attribute::Count => ["one", "two", "three"][usize::from(s.count) - 1].to_string(),
                };
                assert_eq!(name, t.classes[y as usize], "{} item {i}", t.name);
                assert_eq!(s.shift, t.shift);
            }
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(hi - lo <= 1, "{}: class counts {counts:?}", t.name);
        }
    }
}

#[test]
fn stream_order_and_sizes() {
    let s = default_stream(StreamSize { train: 3000, test: 250 });
    assert_eq!(s.len(), 6);
    assert_eq!(s[0].attribute, Attribute::NovelShape, "unseen names come first");
    assert_eq!(s.last().unwrap().attribute, Attribute::Colour);
    let shifts: HashSet<_> = s.iter().map(|t| t.shift).collect();
    assert_eq!(shifts.len(), s.len(), "every task has its own shift");
    for t in &s {
        assert_eq!((t.train_size, t.test_size), (3000, 250));
        assert_eq!(t.train_templates.len(), 1);
        assert!((2..=3).contains(&t.eval_templates.len()));
        assert!(t.eval_templates.iter().all(|p| p.contains("{}")));
    }
    assert!(default_stream(StreamSize::QUICK).iter().all(|t| (t.train_size, t.test_size) == (1000, 250)));
}

#[test]
fn captions_are_true_and_never_name_reserved_shapes() {
    let reserved: Vec<&str> = Shape::RESERVED.iter().flat_map(|s| [s.name(), s.plural()]).collect();
    let mut mentioned = [0usize; 6];
    for i in 0..10_000u64 {
        let (s, c) = pretrain_pair(7, i / 64, i % 64);
        assert!(matches(&s, &c.attrs), "{:?} vs {}", s, c.text);
        assert!(!s.shape.is_reserved());
        for w in c.text.split_whitespace() {
            assert!(!reserved.contains(&w), "reserved name in {:?}", c.text);
        }
        let a = c.attrs;
        let flags = [
            a.shape.is_some(),
            a.colour.is_some(),
            a.pattern.is_some(),
            a.size.is_some(),
            a.count.is_some(),
            a.position.is_some(),
        ];
        assert!(flags.iter().any(|&f| f), "{:?} mentions nothing", c.text);
        for (m, f) in mentioned.iter_mut().zip(flags) {
            *m += usize::from(f);
        }
        assert_eq!(s.position.is_some(), s.count == 1);
    }
    // Each attribute named about half the time (position only for single objects).
    for (j, m) in mentioned.iter().enumerate() {
        assert!(*m > 3000 && *m < 6500, "attribute {j} named {m} times in 10k");
    }
    // A caption never holds for a scene that contradicts it.
    let mut rng = Rng::new(1);
    let red = Scene::draw(&mut rng, &Draw::default());
    let mut other = red.clone();
    other.colour =
        if red.colour.index() == 0 { mulki_host::synth::Colour::Blue } else { mulki_host::synth::Colour::Red };
    let mut r2 = Rng::new(9);
    for _ in 0..200 {
        let c = caption(&red, &mut r2);
        if c.attrs.colour.is_some() {
            assert!(!matches(&other, &c.attrs));
        }
    }
}

#[test]
fn soft_targets_are_normalised_and_keep_the_diagonal() {
    for step in 0..20 {
        let b = 64;
        let (scenes, caps): (Vec<_>, Vec<_>) = (0..b).map(|i| pretrain_pair(4, step, i)).unzip();
        let attrs: Vec<_> = caps.iter().map(|c| c.attrs).collect();
        for m in [soft_targets(&scenes, &attrs), soft_targets_text(&scenes, &attrs)] {
            for (i, row) in m.chunks(b as usize).enumerate() {
                let s: f32 = row.iter().sum();
                assert!((s - 1.0).abs() < 1e-5, "row {i} sums to {s}");
                assert!(row[i] > 0.0, "row {i} misses its own pair");
                let max = row.iter().cloned().fold(0.0, f32::max);
                assert!((row[i] - max).abs() < 1e-7, "the own pair has the full row weight");
            }
        }
        let batch = pretrain_batch(4, step, b as usize, SIDE);
        assert_eq!(batch.soft_targets, soft_targets(&scenes, &attrs));
        assert_eq!(batch.captions.len(), b as usize);
        assert_eq!(batch.pixels.len(), b as usize * 3 * SIDE * SIDE);
    }
}

#[test]
fn tokenizer_knows_every_caption_and_prompt_word() {
    let v = WordVocab::new();
    assert_eq!(v.eot_id() as usize, v.vocab_size() - 1, "eot is the largest id");
    assert!(v.sot_id() < v.eot_id() && v.sot_id() > UNK_ID);
    assert!((50..=80).contains(&v.vocab_size()), "vocab of {}", v.vocab_size());
    let mut texts: Vec<String> = (0..5000).map(|i| pretrain_pair(8, i / 50, i % 50).1.text).collect();
    for t in all_tasks() {
        for tpl in t.train_templates.iter().chain(&t.eval_templates) {
            texts.extend(t.classes.iter().map(|c| tpl.replace("{}", c)));
        }
    }
    for s in Shape::ALL {
        texts.push(format!("{} {}", s.name(), s.plural()));
    }
    let ctx = 16;
    let rows = v.tokenize_rows(&texts, ctx);
    assert_eq!(rows.len(), texts.len() * ctx);
    for (text, row) in texts.iter().zip(rows.chunks(ctx)) {
        let ids = v.encode(text);
        assert!(!ids.contains(&UNK_ID), "unknown word in {text:?}");
        assert!(ids.len() + 2 <= ctx, "{text:?} does not fit {ctx} tokens");
        let clean: Vec<String> = text
            .split_whitespace()
            .map(|w| w.trim_matches(['.', ',']).to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        assert_eq!(v.decode(&ids), clean.join(" "));
        assert_eq!(row[0], v.sot_id());
        assert_eq!(&row[1..1 + ids.len()], &ids[..]);
        assert_eq!(row[1 + ids.len()], v.eot_id());
        assert!(row[2 + ids.len()..].iter().all(|&x| x == PAD_ID));
        // Legacy argmax pooling finds the end token.
        let argmax = row.iter().enumerate().max_by_key(|(_, &x)| x).unwrap().0;
        assert_eq!(argmax, 1 + ids.len());
    }
    assert_eq!(
        v.encode("A photo of a Zebra."),
        vec![v.id("a").unwrap(), v.id("photo").unwrap(), v.id("of").unwrap(), v.id("a").unwrap(), UNK_ID]
    );
    // Truncation keeps the end token.
    let long = vec!["a red circle ".repeat(10)];
    let row = v.tokenize_rows(&long, 8);
    assert_eq!(row[7], v.eot_id());
}

#[test]
fn synth_source_batches() {
    let tasks = default_stream(StreamSize { train: 3000, test: 250 });
    let mut src = SynthSource::with_reference(tasks.clone(), 3, SIDE, 500);
    let n_px = 3 * SIDE * SIDE;
    assert_eq!(src.len(0, Split::Train), tasks[0].train_size);
    assert_eq!(src.len(0, Split::Test), 250);
    assert_eq!(src.len(99, Split::Test), 0);
    let b = src.train_batch(1, 1, 0, 32).unwrap();
    assert_eq!(b.pixels.len(), 32 * n_px);
    assert_eq!(b.labels.len(), 32);
    assert!(b.pixels.iter().all(|x| x.is_finite() && x.abs() < 3.0));
    assert!(b.labels.iter().all(|&y| (y as usize) < tasks[1].classes.len()));
    assert_eq!(b, src.train_batch(1, 1, 0, 32).unwrap(), "recomputable");
    assert_ne!(b.pixels, src.train_batch(1, 2, 0, 32).unwrap().pixels);
    // Micro-batch m of step k is positions ((k−1)·M + m)·b: two micro-batches of 16 read what
    // one batch of 32 reads.
    let mut two = SynthSource::with_reference(tasks.clone(), 3, SIDE, 500).with_micro_batches(2);
    let (m0, m1) = (two.train_batch(1, 1, 0, 16).unwrap(), two.train_batch(1, 1, 1, 16).unwrap());
    assert_eq!([m0.labels, m1.labels].concat(), b.labels);
    // One epoch visits every training image once, so its labels are exactly balanced.
    let (n, k) = (tasks[2].train_size, tasks[2].classes.len());
    let mut counts = vec![0usize; k];
    for step in 1..=n / 100 {
        for &y in &src.train_batch(2, step, 0, 100).unwrap().labels {
            counts[y as usize] += 1;
        }
    }
    assert!(counts.iter().all(|&c| c == n / k), "epoch label counts {counts:?}");
    // Ordered batches are the items in order, test images cached.
    let o = src.ordered(4, Split::Test, 10, 5).unwrap();
    assert_eq!(o.pixels.len(), 5 * n_px);
    for i in 0..5 {
        let (rgb, y) = item(&tasks[4], Split::Test, 10 + i, 3, SIDE);
        assert_eq!(o.labels[i], y);
        let mut px = Vec::new();
        mulki_host::synth::render::normalise_into(&rgb, SIDE, &mut px);
        assert_eq!(&o.pixels[i * n_px..(i + 1) * n_px], &px[..]);
    }
    assert_eq!(o, src.ordered(4, Split::Test, 10, 5).unwrap());
    let te = src.ordered(4, Split::TrainEval, 0, 3).unwrap();
    assert_eq!(te.labels, vec![0, 1, 2]);
    assert!(src.ordered(4, Split::Test, 249, 2).is_err());
    // Reference batches: pretraining-style pairs, labels are caption rows.
    assert_eq!(src.reference_captions().len(), 500);
    let r = src.reference_batch(0, 1, 24).unwrap();
    assert_eq!(r.pixels.len(), 24 * n_px);
    for (k, &row) in r.labels.iter().enumerate() {
        let s = &src.reference_scenes()[row as usize];
        let mut px = Vec::new();
        mulki_host::synth::render::normalise_into(&render(s, SIDE), SIDE, &mut px);
        assert_eq!(&r.pixels[k * n_px..(k + 1) * n_px], &px[..]);
    }
    let rows: HashSet<u32> = (1..=20).flat_map(|k| src.reference_batch(0, k, 25).unwrap().labels).collect();
    assert_eq!(rows.len(), 500, "an epoch of reference batches covers the set");
}

// ---- learnability probe ----

/// Foreground: pixels whose 3×3-smoothed saturation exceeds half the image's maximum (objects
/// are the only saturated things in every shift).
fn foreground(rgb: &[u8], side: usize) -> (Vec<bool>, Vec<[f32; 3]>) {
    let at = |x: isize, y: isize| {
        let x = x.clamp(0, side as isize - 1) as usize;
        let y = y.clamp(0, side as isize - 1) as usize;
        let i = 3 * (y * side + x);
        [f32::from(rgb[i]), f32::from(rgb[i + 1]), f32::from(rgb[i + 2])]
    };
    let mut smooth = vec![[0f32; 3]; side * side];
    for y in 0..side as isize {
        for x in 0..side as isize {
            let mut s = [0f32; 3];
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let p = at(x + dx, y + dy);
                    (0..3).for_each(|c| s[c] += p[c] / 9.0);
                }
            }
            smooth[y as usize * side + x as usize] = s;
        }
    }
    let sat: Vec<f32> = smooth
        .iter()
        .map(|p| p.iter().cloned().fold(0.0, f32::max) - p.iter().cloned().fold(255.0, f32::min))
        .collect();
    let max = sat.iter().cloned().fold(0.0, f32::max);
    (sat.iter().map(|&s| s > 0.5 * max).collect(), smooth)
}

fn components(mask: &[bool], side: usize, min_size: usize) -> usize {
    let mut seen = vec![false; mask.len()];
    let mut n = 0;
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        let (mut stack, mut size) = (vec![start], 0);
        seen[start] = true;
        while let Some(p) = stack.pop() {
            size += 1;
            let (x, y) = (p % side, p / side);
            let mut push = |q: usize| {
                if mask[q] && !seen[q] {
                    seen[q] = true;
                    stack.push(q);
                }
            };
            if x > 0 {
                push(p - 1)
            }
            if x + 1 < side {
                push(p + 1)
            }
            if y > 0 {
                push(p - side)
            }
            if y + 1 < side {
                push(p + side)
            }
        }
        n += usize::from(size >= min_size);
    }
    n
}

/// Features that a task's attribute should be readable from, whatever the shift.
fn features(attr: Attribute, rgb: &[u8], side: usize) -> Vec<f32> {
    let (mask, smooth) = foreground(rgb, side);
    let idx: Vec<usize> = (0..side * side).filter(|&i| mask[i]).collect();
    let area = idx.len().max(1) as f32;
    match attr {
        Attribute::Colour => {
            let mut m = [0f32; 3];
            idx.iter().for_each(|&i| (0..3).for_each(|c| m[c] += smooth[i][c] / area));
            m.to_vec()
        }
        Attribute::Position => {
            let cx = idx.iter().map(|&i| (i % side) as f32).sum::<f32>() / area;
            let cy = idx.iter().map(|&i| (i / side) as f32).sum::<f32>() / area;
            vec![cx, cy]
        }
        Attribute::Count => vec![components(&mask, side, 6) as f32],
        Attribute::Size => {
            let extent = |f: &dyn Fn(usize) -> usize| {
                let (lo, hi) = (idx.iter().map(|&i| f(i)).min(), idx.iter().map(|&i| f(i)).max());
                (hi.unwrap_or(0) - lo.unwrap_or(0) + 1) as f32
            };
            vec![area.sqrt(), extent(&|i| i % side).max(extent(&|i| i / side))]
        }
        Attribute::Shape | Attribute::NovelShape => {
            // The mask in its bounding box, resampled to 10×10.
            let (x0, x1) =
                (idx.iter().map(|&i| i % side).min().unwrap_or(0), idx.iter().map(|&i| i % side).max().unwrap_or(0));
            let (y0, y1) =
                (idx.iter().map(|&i| i / side).min().unwrap_or(0), idx.iter().map(|&i| i / side).max().unwrap_or(0));
            let g = 10;
            let mut f = Vec::with_capacity(g * g + 1);
            for gy in 0..g {
                for gx in 0..g {
                    let x = x0 + (gx * (x1 - x0 + 1)) / g;
                    let y = y0 + (gy * (y1 - y0 + 1)) / g;
                    f.push(f32::from(u8::from(mask[y * side + x])));
                }
            }
            f.push((x1 - x0 + 1) as f32 / (y1 - y0 + 1) as f32);
            f
        }
        Attribute::Pattern => {
            // Luminance differences along 4 directions at lags 1 and 2, inside the object,
            // relative to its mean luminance.
            let lum = |x: usize, y: usize| {
                let i = 3 * (y * side + x);
                0.3 * f32::from(rgb[i]) + 0.59 * f32::from(rgb[i + 1]) + 0.11 * f32::from(rgb[i + 2])
            };
            let mean = idx.iter().map(|&i| lum(i % side, i / side)).sum::<f32>() / area;
            let mut f = Vec::new();
            for lag in [1isize, 2] {
                for (dx, dy) in [(1isize, 0isize), (0, 1), (1, 1), (1, -1)] {
                    let (mut s, mut n) = (0f32, 0f32);
                    for &i in &idx {
                        let (x, y) = ((i % side) as isize, (i / side) as isize);
                        let (qx, qy) = (x + lag * dx, y + lag * dy);
                        if qx < 0
                            || qy < 0
                            || qx >= side as isize
                            || qy >= side as isize
                            || !mask[qy as usize * side + qx as usize]
                        {
                            continue;
                        }
                        s += (lum(x as usize, y as usize) - lum(qx as usize, qy as usize)).abs();
                        n += 1.0;
                    }
                    f.push(s / n.max(1.0) / mean.max(1.0));
                }
            }
            f
        }
    }
}

/// Nearest-class-mean accuracy (z-scored features) with means from `n_train` training images.
fn ncm_accuracy(t: &TaskSpec, n_train: usize, n_test: usize, feat: &dyn Fn(&[u8]) -> Vec<f32>) -> f64 {
    let k = t.classes.len();
    let train: Vec<(Vec<f32>, u32)> = (0..n_train)
        .map(|i| {
            let (rgb, y) = item(t, Split::Train, i, 1, SIDE);
            (feat(&rgb), y)
        })
        .collect();
    let d = train[0].0.len();
    let mut mu = vec![0f64; d];
    let mut var = vec![0f64; d];
    train.iter().for_each(|(f, _)| f.iter().enumerate().for_each(|(j, &x)| mu[j] += f64::from(x) / n_train as f64));
    train.iter().for_each(|(f, _)| {
        f.iter().enumerate().for_each(|(j, &x)| var[j] += (f64::from(x) - mu[j]).powi(2) / n_train as f64)
    });
    let z = |f: &[f32]| -> Vec<f64> {
        f.iter().enumerate().map(|(j, &x)| (f64::from(x) - mu[j]) / var[j].sqrt().max(1e-6)).collect()
    };
    let mut means = vec![vec![0f64; d]; k];
    let mut counts = vec![0f64; k];
    for (f, y) in &train {
        let y = *y as usize;
        counts[y] += 1.0;
        for (m, x) in means[y].iter_mut().zip(z(f)) {
            *m += x;
        }
    }
    for (m, c) in means.iter_mut().zip(&counts) {
        m.iter_mut().for_each(|x| *x /= c.max(1.0));
    }
    let mut correct = 0;
    for i in 0..n_test {
        let (rgb, y) = item(t, Split::Test, i, 1, SIDE);
        let f = z(&feat(&rgb));
        let dist = |m: &Vec<f64>| m.iter().zip(&f).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
        let pred = (0..k).min_by(|&a, &b| dist(&means[a]).total_cmp(&dist(&means[b]))).unwrap();
        correct += usize::from(pred == y as usize);
    }
    correct as f64 / n_test as f64
}

/// `rgb` average-pooled over `f`×`f` blocks.
fn pooled(rgb: &[u8], side: usize, f: usize) -> Vec<f32> {
    let g = side / f;
    let mut out = vec![0f32; g * g * 3];
    for y in 0..side {
        for x in 0..side {
            for c in 0..3 {
                out[3 * ((y / f) * g + x / f) + c] += f32::from(rgb[3 * (y * side + x) + c]);
            }
        }
    }
    out
}

#[test]
fn every_task_is_readable_through_its_shift() {
    let mut report = Vec::new();
    for t in all_tasks() {
        let chance = 1.0 / t.classes.len() as f64;
        let acc = ncm_accuracy(&t, 500, 500, &|rgb| features(t.attribute, rgb, SIDE));
        // Raw pixels (8×8 average-pooled RGB) for comparison: position-bound, so far weaker.
        let raw = ncm_accuracy(&t, 500, 500, &|rgb| pooled(rgb, SIDE, 4));
        report.push(format!(
            "{} ({}): {:.1}% (raw pixels {:.1}%, chance {:.1}%)",
            t.name,
            t.shift.name(),
            100.0 * acc,
            100.0 * raw,
            100.0 * chance
        ));
        // At least 60% of the way from chance to perfect.
        assert!(acc > chance + 0.6 * (1.0 - chance), "{}", report.last().unwrap());
    }
    println!("{}", report.join("\n"));
}

/// Pretraining with real pairs: the targets are block-diagonal, every row a distribution, and a
/// real image matches exactly the drawn captions equal to its own.
#[test]
fn pairs_extend_a_batch_with_block_diagonal_targets() {
    use mulki_host::data::pairs::PairSet;
    use mulki_host::run::pretrain::with_pairs;
    let side = 8;
    let n = 3 * side * side;
    // Two distinct captions, so draws repeat some.
    let pairs = PairSet {
        pixels: (0..2 * n).map(|i| i as f32).collect(),
        captions: vec!["red apple".into(), "blue car".into()],
        side,
    };
    let (bs, np) = (6, 5);
    let syn = pretrain_batch(4, 9, bs, side);
    let batch = with_pairs(syn.clone(), &pairs, 4, 9, np);
    let b = bs + np;
    assert_eq!(batch.captions.len(), b);
    assert_eq!(batch.pixels.len(), b * n);
    assert_eq!(&batch.pixels[..bs * n], &syn.pixels[..]);
    for t in [&batch.soft_targets, &batch.soft_targets_text] {
        for i in 0..b {
            let row = &t[i * b..(i + 1) * b];
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "row {i} sums to 1");
            for (j, &t) in row.iter().enumerate() {
                let (real_i, real_j) = (i >= bs, j >= bs);
                if real_i != real_j {
                    assert_eq!(t, 0.0, "no target across the blocks ({i}, {j})");
                } else if real_i {
                    assert_eq!(t > 0.0, batch.captions[i] == batch.captions[j], "({i}, {j})");
                }
            }
        }
    }
    for i in 0..bs {
        assert_eq!(&batch.soft_targets[i * b..i * b + bs], &syn.soft_targets[i * bs..(i + 1) * bs]);
    }
    // Each drawn image is its caption's: pixel 0 of pair p is p·n.
    for k in bs..b {
        let p = (batch.pixels[k * n] as usize) / n;
        assert_eq!(batch.captions[k], pairs.captions[p]);
    }
    assert_eq!(batch, with_pairs(syn, &pairs, 4, 9, np), "deterministic");
}
