//! Template captions naming a random subset of a scene's attributes, and the match rule behind
//! pretraining's soft targets: caption j fits image i when every attribute j names holds for i,
//! so "a red object" is a positive for every red scene in the batch, not a false negative.
use mulki_core::rng::Rng;

use super::world::{Colour, Pattern, Position, Scene, Shape, Size, COUNT_WORDS};

/// The attributes a caption mentions (`None`: not mentioned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CaptionAttrs {
    pub shape: Option<Shape>,
    pub colour: Option<Colour>,
    pub pattern: Option<Pattern>,
    pub size: Option<Size>,
    pub position: Option<Position>,
    pub count: Option<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caption {
    pub text: String,
    pub attrs: CaptionAttrs,
}

/// Openings of captions (words shared with the task prompts).
pub const PREFIXES: [&str; 4] = ["", "a photo of ", "an image of ", "a picture of "];
/// Nouns standing in for an unmentioned shape.
pub const GENERIC: [(&str, &str); 2] = [("object", "objects"), ("shape", "shapes")];

/// Whether every attribute `attrs` names holds for `scene`.
pub fn matches(scene: &Scene, attrs: &CaptionAttrs) -> bool {
    attrs.shape.is_none_or(|s| s == scene.shape)
        && attrs.colour.is_none_or(|c| c == scene.colour)
        && attrs.pattern.is_none_or(|p| p == scene.pattern)
        && attrs.size.is_none_or(|s| s == scene.size)
        && attrs.position.is_none_or(|p| scene.position == Some(p))
        && attrs.count.is_none_or(|n| n == scene.count)
}

/// The caption's text for `attrs` (all taken from one scene), with `prefix` and generic
/// noun index `noun` used when no shape is named.
pub fn text_of(attrs: &CaptionAttrs, prefix: &str, noun: usize) -> String {
    let plural = attrs.count.is_some_and(|n| n > 1);
    let mut words: Vec<&str> = Vec::with_capacity(10);
    if let Some(s) = attrs.size {
        words.push(s.name());
    }
    if let Some(c) = attrs.colour {
        words.push(c.name());
    }
    if let Some(p) = attrs.pattern {
        words.push(p.name());
    }
    let (one, many) = GENERIC[noun % GENERIC.len()];
    words.push(match (attrs.shape, plural) {
        (Some(s), false) => s.name(),
        (Some(s), true) => s.plural(),
        (None, false) => one,
        (None, true) => many,
    });
    let det = match attrs.count {
        Some(n) => COUNT_WORDS[usize::from(n.clamp(1, 3)) - 1],
        None if words[0].starts_with(['a', 'e', 'i', 'o', 'u']) => "an",
        None => "a",
    };
    let mut text = format!("{prefix}{det} {}", words.join(" "));
    if let Some(p) = attrs.position {
        text.push(' ');
        text.push_str(p.phrase());
    }
    text
}

/// A caption of `scene`: each attribute named with probability ½, at least one; position only
/// for single objects.
pub fn caption(scene: &Scene, rng: &mut Rng) -> Caption {
    let mut a = CaptionAttrs::default();
    loop {
        let mut coin = || rng.below(2) == 0;
        a.shape = coin().then_some(scene.shape);
        a.colour = coin().then_some(scene.colour);
        a.pattern = coin().then_some(scene.pattern);
        a.size = coin().then_some(scene.size);
        a.count = coin().then_some(scene.count);
        a.position = if coin() { scene.position } else { None };
        if a != CaptionAttrs::default() {
            break;
        }
    }
    let prefix = PREFIXES[rng.below(PREFIXES.len() as u64) as usize];
    let noun = rng.below(GENERIC.len() as u64) as usize;
    Caption { text: text_of(&a, prefix, noun), attrs: a }
}

/// The 0/1 match matrix [images, captions], row-major.
pub fn match_matrix(scenes: &[Scene], captions: &[CaptionAttrs]) -> Vec<f32> {
    scenes.iter().flat_map(|s| captions.iter().map(move |c| f32::from(u8::from(matches(s, c))))).collect()
}

/// Image→text soft targets: [`match_matrix`] with rows normalised to sum 1. A row with no
/// match (a caption set not drawn from these scenes) stays all zero.
pub fn soft_targets(scenes: &[Scene], captions: &[CaptionAttrs]) -> Vec<f32> {
    let mut m = match_matrix(scenes, captions);
    normalise_rows(&mut m, captions.len());
    m
}

/// Text→image soft targets: row j holds caption j's matches over the images, normalised.
pub fn soft_targets_text(scenes: &[Scene], captions: &[CaptionAttrs]) -> Vec<f32> {
    let mut m: Vec<f32> =
        captions.iter().flat_map(|c| scenes.iter().map(move |s| f32::from(u8::from(matches(s, c))))).collect();
    normalise_rows(&mut m, scenes.len());
    m
}

fn normalise_rows(m: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    for row in m.chunks_mut(cols) {
        let s: f32 = row.iter().sum();
        if s > 0.0 {
            row.iter_mut().for_each(|x| *x /= s);
        }
    }
}
