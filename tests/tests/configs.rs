//! The shipped MTIL run configs (`configs/*.toml`): they parse, list the 11 datasets in ZSCL's
//! orders with ZSCL's class counts, learning rates, iterations and templates, and agree with each
//! other. The class names and templates themselves come from ZSCL's code (docs/datasets.md).
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use mulki_host::run::config::{DatasetFormat, RunConfig, TaskConfig};

const ORDER_I: [&str; 11] = [
    "Aircraft",
    "Caltech101",
    "CIFAR100",
    "DTD",
    "EuroSAT",
    "Flowers",
    "Food",
    "MNIST",
    "OxfordPet",
    "StanfordCars",
    "SUN397",
];

const ORDER_II: [&str; 11] = [
    "StanfordCars",
    "Food",
    "MNIST",
    "OxfordPet",
    "Flowers",
    "SUN397",
    "Aircraft",
    "Caltech101",
    "DTD",
    "EuroSAT",
    "CIFAR100",
];

/// (dataset, classes, evaluation templates) as in ZSCL's `mtil/src/datasets/`.
const ZSCL: [(&str, usize, usize); 11] = [
    ("Aircraft", 100, 2),
    ("Caltech101", 101, 34),
    ("CIFAR100", 100, 18),
    ("DTD", 47, 8),
    ("EuroSAT", 10, 3),
    ("Flowers", 102, 1),
    ("Food", 101, 1),
    ("MNIST", 10, 1),
    ("OxfordPet", 37, 1),
    ("StanfordCars", 196, 9),
    ("SUN397", 397, 2),
];

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn load(name: &str) -> RunConfig {
    let path = configs_dir().join(name);
    RunConfig::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn task<'a>(cfg: &'a RunConfig, name: &str) -> &'a TaskConfig {
    cfg.tasks.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no task {name}"))
}

/// Everything every shipped config must satisfy; `iterations` is the per-task count.
fn check(file: &str, order: &[&str; 11], iterations: usize, shots: Option<usize>) -> RunConfig {
    let cfg = load(file);
    let names: Vec<&str> = cfg.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, order, "{file}: task order");

    let counts: BTreeMap<&str, (usize, usize)> = ZSCL.iter().map(|&(n, c, t)| (n, (c, t))).collect();
    let mut total = 0;
    for (i, t) in cfg.tasks.iter().enumerate() {
        let (classes, templates) = counts[t.name.as_str()];
        assert_eq!(t.classes.len(), classes, "{file}: {} classes", t.name);
        assert_eq!(t.eval_templates.len(), templates, "{file}: {} templates", t.name);
        total += t.classes.len();

        let unique: HashSet<&String> = t.classes.iter().collect();
        assert_eq!(unique.len(), t.classes.len(), "{file}: {} duplicate class", t.name);
        if let Some(folders) = &t.folders {
            assert_eq!(folders.len(), t.classes.len(), "{file}: {} folders", t.name);
            let unique: HashSet<&String> = folders.iter().collect();
            assert_eq!(unique.len(), folders.len(), "{file}: {} duplicate folder", t.name);
            for f in folders {
                assert!(
                    !f.is_empty() && !f.contains('/') && !f.contains('\\'),
                    "{file}: {} folder {f:?} is not one path component",
                    t.name
                );
            }
        }

        // ZSCL trains with the first of the dataset's templates and evaluates with all of them.
        assert_eq!(t.train_templates.len(), 1, "{file}: {}", t.name);
        assert_eq!(t.train_templates[0], t.eval_templates[0], "{file}: {}", t.name);
        for tpl in t.train_templates.iter().chain(&t.eval_templates) {
            assert_eq!(tpl.matches("{}").count(), 1, "{file}: {} template {tpl:?}", t.name);
        }

        let lr = if t.name == "Aircraft" || t.name == "MNIST" { 5e-5 } else { 1e-5 };
        assert_eq!(cfg.lr(i), lr, "{file}: {} lr", t.name);
        assert_eq!(cfg.iterations(i), iterations, "{file}: {} iterations", t.name);

        let root = t.root.to_string_lossy().replace('\\', "/");
        let folder = t.root.file_name().unwrap().to_string_lossy().into_owned();
        assert!(root.contains("configs/../data/"), "{file}: {} root {root}", t.name);
        assert_eq!(folder, folder.to_lowercase(), "{file}: {} root {root}", t.name);
        if t.name == "MNIST" {
            assert_eq!(t.format, DatasetFormat::Idx);
            assert_eq!((t.train_split.as_str(), t.test_split.as_str()), ("train", "t10k"));
        } else {
            assert_eq!(t.format, DatasetFormat::ImageFolder, "{file}: {}", t.name);
            assert_eq!((t.train_split.as_str(), t.test_split.as_str()), ("train", "test"));
        }
    }
    assert_eq!(total, 1201, "{file}: MTIL has 1,201 classes");

    assert_eq!(cfg.train.batch_size, 64);
    assert_eq!(cfg.train.grad_accumulation, 1);
    assert_eq!(cfg.train.lr, 1e-5);
    assert_eq!(cfg.train.weight_decay, 0.0);
    assert_eq!(cfg.train.iterations, iterations);
    assert_eq!(cfg.train.shots, shots);
    assert_eq!(cfg.method.get("preset").and_then(|v| v.as_str()), Some("mulki"));
    assert!(cfg.reference.is_none());
    assert!(cfg.model.source.ends_with(Path::new("..").join("models").join("clip-vit-base-patch16")));
    cfg
}

#[test]
fn order_one_parses_with_zscl_counts_lrs_and_templates() {
    check("mtil-order1.toml", &ORDER_I, 1000, None);
}

#[test]
fn order_two_parses_with_zscl_counts_lrs_and_templates() {
    check("mtil-order2.toml", &ORDER_II, 1000, None);
}

#[test]
fn few_shot_is_order_one_with_five_shots_and_500_iterations() {
    check("mtil-fewshot.toml", &ORDER_I, 500, Some(5));
}

#[test]
fn the_configs_agree_on_every_dataset() {
    let one = load("mtil-order1.toml");
    for other in ["mtil-order2.toml", "mtil-fewshot.toml"] {
        let cfg = load(other);
        for name in ORDER_I {
            let (a, b) = (task(&one, name), task(&cfg, name));
            assert_eq!(a.classes, b.classes, "{other}: {name}");
            assert_eq!(a.folders, b.folders, "{other}: {name}");
            assert_eq!(a.train_templates, b.train_templates, "{other}: {name}");
            assert_eq!(a.eval_templates, b.eval_templates, "{other}: {name}");
            assert_eq!(a.root, b.root, "{other}: {name}");
            assert_eq!(a.format, b.format, "{other}: {name}");
        }
    }
}

/// Strings that show the lists are ZSCL's (torchvision's names after ZSCL's `_` -> ` `, or ZSCL's
/// hard-coded lists), not cleaned-up ones.
#[test]
fn class_names_and_templates_are_zscls() {
    let cfg = load("mtil-order1.toml");
    let class = |name: &str, i: usize| task(&cfg, name).classes[i].clone();
    let folder = |name: &str, i: usize| task(&cfg, name).folders.as_ref().unwrap()[i].clone();

    assert_eq!(class("MNIST", 0), "0 - zero");
    assert_eq!(class("MNIST", 9), "9 - nine");
    assert_eq!(task(&cfg, "MNIST").eval_templates, ["a photo of the number: \"{}\"."]);
    assert!(task(&cfg, "MNIST").folders.is_none());

    assert_eq!(class("Aircraft", 0), "707-320");
    assert_eq!(class("Aircraft", 72), "F-16A/B");
    assert_eq!(folder("Aircraft", 72), "F-16A_B");
    assert_eq!(task(&cfg, "Aircraft").train_templates, ["a photo of a {}, a type of aircraft."]);

    // ZSCL's hard-coded Caltech101 names, double space included; folders are the categories.
    assert_eq!(class("Caltech101", 0), "off-center face");
    assert_eq!(folder("Caltech101", 0), "Faces");
    assert_eq!(class("Caltech101", 29), "head of a  crocodile");
    assert_eq!(folder("Caltech101", 29), "crocodile_head");
    assert_eq!(class("Caltech101", 100), "yin and yang symbol");
    assert_eq!(folder("Caltech101", 100), "yin_yang");

    assert_eq!(class("CIFAR100", 1), "aquarium fish");
    assert_eq!(folder("CIFAR100", 1), "aquarium_fish");
    assert_eq!(class("DTD", 30), "polka-dotted");
    assert!(task(&cfg, "DTD").folders.is_none());
    assert_eq!(class("EuroSAT", 2), "brushland or shrubland");
    assert_eq!(folder("EuroSAT", 2), "HerbaceousVegetation");
    assert_eq!(class("Flowers", 0), "pink primrose");
    assert_eq!(folder("Flowers", 101), "102");
    assert_eq!(class("Food", 0), "apple pie");
    assert_eq!(folder("Food", 0), "apple_pie");
    assert_eq!(class("OxfordPet", 2), "American Pit Bull Terrier");
    assert_eq!(folder("OxfordPet", 2), "american_pit_bull_terrier");
    assert_eq!(class("OxfordPet", 5), "Bengal");
    assert_eq!(class("StanfordCars", 5), "Acura Integra Type R 2001");
    assert_eq!(class("StanfordCars", 173), "Ram C/V Cargo Van Minivan 2012");
    assert_eq!(folder("StanfordCars", 173), "Ram C_V Cargo Van Minivan 2012");
    assert_eq!(class("SUN397", 8), "apartment building/outdoor");
    assert_eq!(folder("SUN397", 8), "a_apartment_building_outdoor");
    assert_eq!(class("SUN397", 206), "jail/indoor");
    assert_eq!(class("SUN397", 207), "jail cell");
    assert_eq!(task(&cfg, "SUN397").eval_templates, ["a photo of a {}.", "a photo of the {}."]);
}

/// The commented-out `[reference]` block is valid: uncommented, with the `zscl` preset, the
/// config parses; without it, the `zscl` preset is refused.
#[test]
fn the_commented_reference_block_serves_the_zscl_preset() {
    let path = configs_dir().join("mtil-order1.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let zscl = text.replace("preset = \"mulki\"", "preset = \"zscl\"");
    assert!(RunConfig::parse(&zscl, &path).is_err());

    let mut uncommented = String::new();
    let mut in_block = false;
    for line in zscl.lines() {
        if line == "# [reference]" {
            in_block = true;
        }
        if in_block && line.starts_with("# ") {
            uncommented.push_str(&line[2..]);
        } else {
            in_block = false;
            uncommented.push_str(line);
        }
        uncommented.push('\n');
    }
    let cfg = RunConfig::parse(&uncommented, &path).unwrap_or_else(|e| panic!("{e}"));
    let reference = cfg.reference.expect("a [reference] block");
    assert_eq!(reference.batch_size, 64);
    assert!(reference.captions.ends_with("captions.txt"));
}
