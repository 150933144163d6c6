//! The synthetic world's attributes and scenes. A scene is plain data drawn from a counter-based
//! stream, so any image is a pure function of (seed, stream, index) and can be regenerated alone;
//! geometry is kept in units of a 32-pixel canvas so the same scene renders at any side.
use mulki_core::rng::Rng;

/// Canvas the geometry constants are written for; `render` scales them by `side / 32`.
pub const BASE_SIDE: f32 = 32.0;
/// Object radii (32-pixel units): the ratio 1.6 keeps "small" and "large" apart at 32×32.
pub const RADIUS_SMALL: f32 = 6.0;
pub const RADIUS_LARGE: f32 = 9.6;
/// Distance of the four off-centre positions from the centre (32-pixel units).
const POSITION_OFFSET: f32 = 7.5;
/// Uniform jitter of every object centre (± this many 32-pixel units).
const JITTER: f32 = 1.25;

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($v),+ }
        impl $name {
            /// Every value, in declaration order (the class order of its task).
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            /// The word captions and prompts use.
            pub fn name(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
            /// Position in [`Self::ALL`].
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

named_enum!(
    /// Eight shapes of pretraining, then four reserved ones whose names never occur in
    /// pretraining captions (the unseen-name task). No two differ by a rotation within ±45°
    /// (no square/diamond pair), so the rotation shift cannot make classes coincide.
    Shape {
        Circle => "circle", Square => "square", Triangle => "triangle", Star => "star",
        Cross => "cross", Heart => "heart", Moon => "moon", Ring => "ring",
        Arrow => "arrow", Hourglass => "hourglass", Tee => "tee", Semicircle => "semicircle",
    }
);

named_enum!(
    /// Saturated colours far from the grey background and from each other.
    Colour {
        Red => "red", Orange => "orange", Yellow => "yellow", Green => "green",
        Cyan => "cyan", Blue => "blue", Purple => "purple", Pink => "pink",
    }
);

named_enum!(
    /// Fill patterns: the object colour alternating with a darker shade of it, so the
    /// silhouette and the mean hue survive every pattern.
    Pattern { Solid => "solid", Striped => "striped", Dotted => "dotted", Checkered => "checkered" }
);

named_enum!(Size { Small => "small", Large => "large" });

named_enum!(
    /// Where a single object sits; scenes of 2–3 objects have no position.
    Position { Left => "left", Right => "right", Top => "top", Bottom => "bottom", Center => "center" }
);

impl Shape {
    /// The shapes pretraining captions name.
    pub const SEEN: &'static [Shape] = &[
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Star,
        Shape::Cross,
        Shape::Heart,
        Shape::Moon,
        Shape::Ring,
    ];
    /// Shapes (and names) that never occur in pretraining.
    pub const RESERVED: &'static [Shape] = &[Shape::Arrow, Shape::Hourglass, Shape::Tee, Shape::Semicircle];

    pub fn is_reserved(self) -> bool {
        Shape::RESERVED.contains(&self)
    }

    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
            Shape::Star => "stars",
            Shape::Cross => "crosses",
            Shape::Heart => "hearts",
            Shape::Moon => "moons",
            Shape::Ring => "rings",
            Shape::Arrow => "arrows",
            Shape::Hourglass => "hourglasses",
            Shape::Tee => "tees",
            Shape::Semicircle => "semicircles",
        }
    }
}

impl Colour {
    /// The canonical RGB of the colour.
    pub fn rgb(self) -> [u8; 3] {
        PALETTE[self.index()]
    }
}

/// Canonical colours, in [`Colour::ALL`] order.
pub const PALETTE: [[u8; 3]; 8] = [
    [225, 35, 35],   // red
    [245, 140, 20],  // orange
    [240, 225, 30],  // yellow
    [35, 175, 55],   // green
    [40, 215, 225],  // cyan
    [40, 70, 225],   // blue
    [150, 50, 205],  // purple
    [250, 120, 200], // pink
];

/// The "new palette" shift: colour i is drawn as `SHIFTED_PALETTE[i]` (muted, earthy tones
/// none of which is one of the canonical eight).
pub const SHIFTED_PALETTE: [[u8; 3]; 8] = [
    [130, 60, 30],   // brown
    [120, 130, 30],  // olive
    [30, 110, 110],  // teal
    [25, 35, 110],   // navy
    [170, 150, 230], // lavender
    [150, 235, 140], // mint
    [110, 20, 60],   // maroon
    [235, 200, 140], // sand
];

impl Position {
    /// The phrase captions use ("on the left", "in the center").
    pub fn phrase(self) -> &'static str {
        match self {
            Position::Left => "on the left",
            Position::Right => "on the right",
            Position::Top => "at the top",
            Position::Bottom => "at the bottom",
            Position::Center => "in the center",
        }
    }

    /// Centre in 32-pixel units.
    pub fn centre(self) -> [f32; 2] {
        let (c, d) = (BASE_SIDE / 2.0, POSITION_OFFSET);
        match self {
            Position::Left => [c - d, c],
            Position::Right => [c + d, c],
            Position::Top => [c, c - d],
            Position::Bottom => [c, c + d],
            Position::Center => [c, c],
        }
    }
}

/// Count words, index = count − 1.
pub const COUNT_WORDS: [&str; 3] = ["one", "two", "three"];

/// Largest rotation of [`Shift::Rotation`], radians (±20°). Chosen on the tuning seed 100 so
/// that plain fine-tuning learns the shape task: at ±30° ft reached 76–79% right after 150
/// steps (zero-shot 75–80%), at ±20° 89.6% (zero-shot 88.8%).
pub const MAX_ROTATION: f64 = std::f64::consts::PI / 9.0;

/// A domain shift applied at render time. Each keeps the attributes readable: noise and
/// contrast are mild enough that colours and patterns stay apart, rotation stays within ±20°,
/// clutter is achromatic and drawn behind the objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shift {
    None,
    /// Pixel noise, σ = 22 grey levels (Irwin–Hall approximation of a Gaussian).
    Noise,
    /// Objects rotated uniformly within ±[`MAX_ROTATION`].
    Rotation,
    /// All values pulled 60% of the way to a mid grey.
    LowContrast,
    /// 6–9 small black or white strokes and dots scattered behind the objects.
    Clutter,
    /// Colours drawn from [`SHIFTED_PALETTE`].
    Palette,
    /// Two passes of a 3×3 box blur.
    Blur,
}

impl Shift {
    pub fn name(self) -> &'static str {
        match self {
            Shift::None => "none",
            Shift::Noise => "gaussian noise",
            Shift::Rotation => "rotation ±20°",
            Shift::LowContrast => "low contrast",
            Shift::Clutter => "clutter",
            Shift::Palette => "new palette",
            Shift::Blur => "blur",
        }
    }
}

/// One image's content. All objects of a scene share shape, colour, pattern and size (so a
/// caption like "two blue squares" describes it fully).
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    pub shape: Shape,
    pub colour: Colour,
    pub pattern: Pattern,
    pub size: Size,
    /// 1–3 objects.
    pub count: u8,
    /// `Some` exactly when `count == 1`.
    pub position: Option<Position>,
    /// Object centres in 32-pixel units (`count` of them).
    pub centres: Vec<[f32; 2]>,
    /// Rotation of every object, radians (0 unless the shift rotates).
    pub rotation: f32,
    /// Plain background grey level.
    pub grey: u8,
    /// Offset of the fill pattern's grid, pixels.
    pub phase: [u8; 2],
    pub shift: Shift,
    /// Seed of the render-time randomness (noise, clutter).
    pub detail: u64,
}

/// What a scene draw may fix; `None` fields are drawn uniformly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    /// Shapes to draw from when `shape` is `None`.
    pub shapes: &'static [Shape],
    pub shape: Option<Shape>,
    pub colour: Option<Colour>,
    pub pattern: Option<Pattern>,
    pub size: Option<Size>,
    pub count: Option<u8>,
    pub position: Option<Position>,
    /// Probability of a 2–3 object scene when `count` is `None`.
    pub multi_prob: f64,
    pub shift: Shift,
}

impl Default for Draw {
    /// The pretraining distribution: seen shapes, a quarter of scenes with 2–3 objects.
    fn default() -> Self {
        Draw {
            shapes: Shape::SEEN,
            shape: None,
            colour: None,
            pattern: None,
            size: None,
            count: None,
            position: None,
            multi_prob: 0.25,
            shift: Shift::None,
        }
    }
}

fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.below(xs.len() as u64) as usize]
}

fn jitter(rng: &mut Rng) -> f32 {
    ((rng.uniform() * 2.0 - 1.0) as f32) * JITTER
}

/// Layouts of 2 and 3 small objects (32-pixel units) that never overlap, even jittered.
const LAYOUTS_2: [[[f32; 2]; 2]; 4] =
    [[[8.5, 16.0], [23.5, 16.0]], [[16.0, 8.5], [16.0, 23.5]], [[9.0, 9.0], [23.0, 23.0]], [[23.0, 9.0], [9.0, 23.0]]];
const LAYOUTS_3: [[[f32; 2]; 3]; 4] = [
    [[16.0, 7.5], [8.0, 23.0], [24.0, 23.0]],
    [[16.0, 24.5], [8.0, 9.0], [24.0, 9.0]],
    [[7.5, 16.0], [23.0, 8.0], [23.0, 24.0]],
    [[24.5, 16.0], [9.0, 8.0], [9.0, 24.0]],
];

impl Scene {
    /// Draws a scene from `rng` under the constraints of `d`. Scenes of 2–3 objects are always
    /// small (so they fit) and have no position.
    pub fn draw(rng: &mut Rng, d: &Draw) -> Scene {
        let shape = d.shape.unwrap_or_else(|| pick(rng, d.shapes));
        let colour = d.colour.unwrap_or_else(|| pick(rng, Colour::ALL));
        let pattern = d.pattern.unwrap_or_else(|| pick(rng, Pattern::ALL));
        let count = d.count.unwrap_or_else(|| if rng.uniform() < d.multi_prob { 2 + rng.below(2) as u8 } else { 1 });
        let drawn_size = pick(rng, Size::ALL);
        let size = if count > 1 { Size::Small } else { d.size.unwrap_or(drawn_size) };
        let (position, base): (Option<Position>, Vec<[f32; 2]>) = match count {
            1 => {
                let p = d.position.unwrap_or_else(|| pick(rng, Position::ALL));
                (Some(p), vec![p.centre()])
            }
            2 => (None, pick(rng, &LAYOUTS_2).to_vec()),
            _ => (None, pick(rng, &LAYOUTS_3).to_vec()),
        };
        let centres = base.iter().map(|c| [c[0] + jitter(rng), c[1] + jitter(rng)]).collect();
        let rotation =
            if d.shift == Shift::Rotation { ((rng.uniform() * 2.0 - 1.0) * MAX_ROTATION) as f32 } else { 0.0 };
        let grey = 112 + rng.below(33) as u8;
        let phase = [rng.below(4) as u8, rng.below(4) as u8];
        let detail = rng.next_u64();
        Scene { shape, colour, pattern, size, count, position, centres, rotation, grey, phase, shift: d.shift, detail }
    }

    /// Object radius in 32-pixel units.
    pub fn radius(&self) -> f32 {
        match self.size {
            Size::Small => RADIUS_SMALL,
            Size::Large => RADIUS_LARGE,
        }
    }

    /// The RGB objects are drawn in (the shifted palette under [`Shift::Palette`]).
    pub fn object_rgb(&self) -> [u8; 3] {
        match self.shift {
            Shift::Palette => SHIFTED_PALETTE[self.colour.index()],
            _ => self.colour.rgb(),
        }
    }
}
