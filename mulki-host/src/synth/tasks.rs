//! The synthetic task stream: each task classifies one attribute under its own domain shift.
//! Item i of a split is drawn from the stream (seed ^ split salt, attribute, i), so train and
//! test never share a stream, images do not depend on the task order, and labels are i mod K.
use mulki_core::rng::Rng;

use super::render::render;
use super::world::{Colour, Draw, Pattern, Position, Scene, Shape, Shift, Size, COUNT_WORDS};
use crate::run::source::Split;

const TRAIN_SALT: u64 = 0x7472_6169_6e2d_7472; // "train-tr"
const TEST_SALT: u64 = 0x7465_7374_2d74_6573; // "test-tes"

/// Images per task in each split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSize {
    pub train: usize,
    pub test: usize,
}

impl StreamSize {
    /// The demo: 3,000 training images (1.6 epochs at 150 steps of 32) and 1,000 test images.
    pub const FULL: StreamSize = StreamSize { train: 3000, test: 1000 };
    /// `--quick`: 25 steps of 32 see 800 images, so 1,000 are enough (MulKI's prototypes read
    /// every one), and 250 test images.
    pub const QUICK: StreamSize = StreamSize { train: 1000, test: 250 };
}

/// The attribute a task classifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// The reserved shapes, whose names pretraining never saw.
    NovelShape,
    Shape,
    Colour,
    Pattern,
    Size,
    Position,
    Count,
}

impl Attribute {
    /// Stable id of the attribute (the image stream's counter, independent of task order).
    fn id(self) -> u64 {
        self as u64
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    pub name: String,
    pub attribute: Attribute,
    pub shift: Shift,
    /// Class names as they fill the prompt templates' `{}`.
    pub classes: Vec<String>,
    pub train_templates: Vec<String>,
    pub eval_templates: Vec<String>,
    pub train_size: usize,
    pub test_size: usize,
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

/// The task of `attribute` with its shift, classes and prompts.
pub fn task(attribute: Attribute) -> TaskSpec {
    let object = ["a photo of a {} object.", "a {} shape.", "an image of one {} object."];
    let shape = ["a photo of a {}.", "a picture of a {} shape.", "an image of one {}."];
    let (name, shift, classes, templates): (&str, Shift, Vec<String>, [&str; 3]) = match attribute {
        Attribute::NovelShape => {
            ("novel-shape", Shift::Blur, Shape::RESERVED.iter().map(|s| s.name().into()).collect(), shape)
        }
        Attribute::Shape => ("shape", Shift::Rotation, Shape::SEEN.iter().map(|s| s.name().into()).collect(), shape),
        Attribute::Colour => ("colour", Shift::Noise, Colour::ALL.iter().map(|c| c.name().into()).collect(), object),
        Attribute::Pattern => {
            ("pattern", Shift::LowContrast, Pattern::ALL.iter().map(|p| p.name().into()).collect(), object)
        }
        Attribute::Size => ("size", Shift::Blur, Size::ALL.iter().map(|s| s.name().into()).collect(), object),
        Attribute::Position => (
            "position",
            Shift::Clutter,
            Position::ALL.iter().map(|p| p.phrase().into()).collect(),
            ["a photo of an object {}.", "a shape {}.", "an image of one object {}."],
        ),
        Attribute::Count => (
            "count",
            Shift::Palette,
            strings(&COUNT_WORDS),
            ["a photo of {} objects.", "{} shapes.", "an image of {} objects."],
        ),
    };
    TaskSpec {
        name: name.into(),
        attribute,
        shift,
        classes,
        train_templates: strings(&templates[..1]),
        eval_templates: strings(&templates),
        train_size: StreamSize::FULL.train,
        test_size: StreamSize::FULL.test,
    }
}

/// The demo's six tasks: the unseen-name task first and the strongest zero-shot tasks last, so
/// most Transfer entries measure tasks pretraining can solve.
pub fn default_stream(size: StreamSize) -> Vec<TaskSpec> {
    [
        Attribute::NovelShape,
        Attribute::Shape,
        Attribute::Position,
        Attribute::Pattern,
        Attribute::Count,
        Attribute::Colour,
    ]
    .into_iter()
    .map(|a| TaskSpec { train_size: size.train, test_size: size.test, ..task(a) })
    .collect()
}

/// The scene and label of item `index` of `split` (`TrainEval` is the training split).
pub fn scene(task: &TaskSpec, split: Split, index: usize, seed: u64) -> (Scene, u32) {
    let salt = match split {
        Split::Train | Split::TrainEval => TRAIN_SALT,
        Split::Test => TEST_SALT,
    };
    let k = task.classes.len().max(1);
    let label = index % k;
    let mut rng = Rng::for_counter(seed ^ salt, task.attribute.id(), index as u64);
    let mut d = Draw { count: Some(1), multi_prob: 0.0, shift: task.shift, ..Draw::default() };
    match task.attribute {
        Attribute::NovelShape => d.shape = Some(Shape::RESERVED[label]),
        Attribute::Shape => {
            d.shape = Some(Shape::SEEN[label]);
            // Rotated silhouettes are read at the large size only.
            d.size = Some(Size::Large);
        }
        Attribute::Colour => d.colour = Some(Colour::ALL[label]),
        Attribute::Pattern => d.pattern = Some(Pattern::ALL[label]),
        Attribute::Size => d.size = Some(Size::ALL[label]),
        Attribute::Position => d.position = Some(Position::ALL[label]),
        Attribute::Count => {
            d.count = Some(label as u8 + 1);
            // Multi-object scenes are small; single ones must be too, or size would give it away.
            d.size = Some(Size::Small);
        }
    }
    (Scene::draw(&mut rng, &d), label as u32)
}

/// Item `index` of `split`: `side`×`side` RGB8 and its label.
pub fn item(task: &TaskSpec, split: Split, index: usize, seed: u64, side: usize) -> (Vec<u8>, u32) {
    let (s, label) = scene(task, split, index, seed);
    (render(&s, side), label)
}
