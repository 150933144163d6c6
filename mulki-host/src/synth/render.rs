//! Rasterises a [`Scene`] into an RGB8 buffer: shapes as implicit regions in object
//! coordinates (3×3 supersampled for anti-aliasing), fill patterns on the pixel grid, then the
//! scene's domain shift. A 32×32 image takes a few microseconds, so images are never stored.
use mulki_core::rng::Rng;

use super::world::{Pattern, Scene, Shape, Shift, BASE_SIDE};

/// Supersampling grid per pixel (n×n coverage samples).
const SUPERSAMPLE: usize = 3;
/// Patterned cells are the object colour times this (dark enough to see, bright enough that
/// the hue stays readable).
const SHADE: f32 = 0.45;
const NOISE_SIGMA: f32 = 22.0;
/// Fraction of contrast kept by [`Shift::LowContrast`].
const CONTRAST: f32 = 0.4;

type Pt = [f32; 2];

const SQUARE: [Pt; 4] = [[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]];
const TRIANGLE: [Pt; 3] = [[0.0, -0.95], [0.98, 0.75], [-0.98, 0.75]];
const STAR: [Pt; 10] = [
    [0.0, -1.0],
    [0.2645, -0.3641],
    [0.9511, -0.3090],
    [0.4280, 0.1391],
    [0.5878, 0.8090],
    [0.0, 0.45],
    [-0.5878, 0.8090],
    [-0.4280, 0.1391],
    [-0.9511, -0.3090],
    [-0.2645, -0.3641],
];
const CROSS: [Pt; 12] = [
    [-0.32, -0.95],
    [0.32, -0.95],
    [0.32, -0.32],
    [0.95, -0.32],
    [0.95, 0.32],
    [0.32, 0.32],
    [0.32, 0.95],
    [-0.32, 0.95],
    [-0.32, 0.32],
    [-0.95, 0.32],
    [-0.95, -0.32],
    [-0.32, -0.32],
];
const ARROW: [Pt; 7] =
    [[-0.95, -0.27], [0.1, -0.27], [0.1, -0.75], [0.95, 0.0], [0.1, 0.75], [0.1, 0.27], [-0.95, 0.27]];
const HOURGLASS: [Pt; 6] = [[-0.8, -0.9], [0.8, -0.9], [0.15, 0.0], [0.8, 0.9], [-0.8, 0.9], [-0.15, 0.0]];
const TEE: [Pt; 8] = [
    [-0.92, -0.88],
    [0.92, -0.88],
    [0.92, -0.36],
    [0.27, -0.36],
    [0.27, 0.92],
    [-0.27, 0.92],
    [-0.27, -0.36],
    [-0.92, -0.36],
];

/// Even-odd point-in-polygon.
fn in_polygon(p: Pt, poly: &[Pt]) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0] {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Whether object-coordinate point (u, v) (radius 1, v down) lies in `shape`.
pub fn inside(shape: Shape, u: f32, v: f32) -> bool {
    let r2 = u * u + v * v;
    match shape {
        Shape::Circle => r2 <= 0.92 * 0.92,
        Shape::Ring => (0.5 * 0.5..=1.0).contains(&r2),
        Shape::Square => in_polygon([u, v], &SQUARE),
        Shape::Triangle => in_polygon([u, v], &TRIANGLE),
        Shape::Star => in_polygon([u, v], &STAR),
        Shape::Cross => in_polygon([u, v], &CROSS),
        Shape::Heart => {
            // (x² + y² − 1)³ − x²y³ ≤ 0 with y up; spans about ±1.14 × [−1, 1.25].
            let (x, y) = (u * 1.18, -v * 1.18 + 0.12);
            let a = x * x + y * y - 1.0;
            a * a * a - x * x * y * y * y <= 0.0
        }
        Shape::Moon => {
            let (du, dv) = (u - 0.42, v + 0.12);
            r2 <= 0.97 * 0.97 && du * du + dv * dv > 0.78 * 0.78
        }
        Shape::Arrow => in_polygon([u, v], &ARROW),
        Shape::Hourglass => in_polygon([u, v], &HOURGLASS),
        Shape::Tee => in_polygon([u, v], &TEE),
        Shape::Semicircle => {
            let dv = v - 0.45;
            v <= 0.45 && u * u + dv * dv <= 1.1 * 1.1
        }
    }
}

/// An approximately standard normal value: the sum of four 16-bit uniforms, centred and scaled
/// (one `next_u64` instead of Box–Muller's logarithm and cosine; bounded at ±3.46σ).
fn irwin_hall(rng: &mut Rng) -> f32 {
    let x = rng.next_u64();
    let sum: u64 = (0..4).map(|k| (x >> (16 * k)) & 0xffff).sum();
    // Mean 2·65535, variance 4·(65536² − 1)/12 ≈ 65536²/3.
    (sum as f32 - 2.0 * 65535.0) * (3f32.sqrt() / 65536.0)
}

/// Whether pixel (x, y) of the pattern grid is a dark cell; cells are 2 pixels at side 32.
fn dark_cell(pattern: Pattern, x: usize, y: usize, cell: usize) -> bool {
    let (cx, cy) = (x / cell, y / cell);
    match pattern {
        Pattern::Solid => false,
        Pattern::Striped => ((x + y) / cell) % 2 == 1,
        Pattern::Dotted => cx % 2 == 0 && cy % 2 == 0,
        Pattern::Checkered => (cx + cy) % 2 == 1,
    }
}

/// Renders `scene` as `side`×`side` RGB8 (row-major, interleaved).
pub fn render(scene: &Scene, side: usize) -> Vec<u8> {
    let mut out = vec![0u8; side * side * 3];
    render_into(scene, side, &mut out);
    out
}

/// [`render`] into `out` (`side · side · 3` bytes).
pub fn render_into(scene: &Scene, side: usize, out: &mut [u8]) {
    assert_eq!(out.len(), side * side * 3, "render_into: buffer size");
    let unit = side as f32 / BASE_SIDE;
    let mut rng = Rng::new(scene.detail);
    let mut img = vec![f32::from(scene.grey); side * side * 3];
    if scene.shift == Shift::Clutter {
        clutter(&mut img, side, unit, &mut rng);
    }
    for &c in &scene.centres {
        draw_object(&mut img, side, unit, scene, [c[0] * unit, c[1] * unit]);
    }
    match scene.shift {
        Shift::Noise => {
            for v in img.iter_mut() {
                *v += irwin_hall(&mut rng) * NOISE_SIGMA;
            }
        }
        Shift::LowContrast => {
            let mid = 96.0 + (rng.uniform() * 64.0) as f32;
            for v in img.iter_mut() {
                *v = mid + (*v - mid) * CONTRAST;
            }
        }
        Shift::Blur => {
            for _ in 0..2 {
                box_blur(&mut img, side);
            }
        }
        _ => {}
    }
    for (o, v) in out.iter_mut().zip(&img) {
        *o = v.round().clamp(0.0, 255.0) as u8;
    }
}

fn draw_object(img: &mut [f32], side: usize, unit: f32, scene: &Scene, centre: Pt) {
    let r = scene.radius() * unit;
    let (sin, cos) = scene.rotation.sin_cos();
    let rgb = scene.object_rgb().map(f32::from);
    let dark = rgb.map(|c| c * SHADE);
    let cell = ((2.0 * unit).round() as usize).max(1);
    // Every shape lies within 1.1 radii of its centre (the semicircle's corners), at any angle.
    let reach = r * 1.12 + 1.0;
    let lo = |c: f32| ((c - reach).floor().max(0.0)) as usize;
    let hi = |c: f32| ((c + reach).ceil().max(0.0) as usize).min(side);
    let n = SUPERSAMPLE;
    for y in lo(centre[1])..hi(centre[1]) {
        for x in lo(centre[0])..hi(centre[0]) {
            // Inverse rotation into object coordinates.
            let hit = |fx: f32, fy: f32| {
                let (px, py) = (x as f32 + fx - centre[0], y as f32 + fy - centre[1]);
                inside(scene.shape, (cos * px + sin * py) / r, (-sin * px + cos * py) / r)
            };
            // Pixels whose centre and corners agree are taken as wholly in or out; only edge
            // pixels are supersampled.
            let probe = [hit(0.5, 0.5), hit(0.0, 0.0), hit(1.0, 0.0), hit(0.0, 1.0), hit(1.0, 1.0)];
            let cov = if probe.iter().all(|&h| h == probe[0]) {
                f32::from(u8::from(probe[0]))
            } else {
                let mut hits = 0;
                for sy in 0..n {
                    for sx in 0..n {
                        let (fx, fy) = ((sx as f32 + 0.5) / n as f32, (sy as f32 + 0.5) / n as f32);
                        hits += usize::from(hit(fx, fy));
                    }
                }
                hits as f32 / (n * n) as f32
            };
            if cov == 0.0 {
                continue;
            }
            let (gx, gy) = (x + usize::from(scene.phase[0]), y + usize::from(scene.phase[1]));
            let col = if dark_cell(scene.pattern, gx, gy, cell) { dark } else { rgb };
            let i = 3 * (y * side + x);
            for c in 0..3 {
                img[i + c] = img[i + c] * (1.0 - cov) + col[c] * cov;
            }
        }
    }
}

/// Black or white strokes (3–7 px) and 2×2 dots, drawn before the objects so they never hide
/// them.
fn clutter(img: &mut [f32], side: usize, unit: f32, rng: &mut Rng) {
    let marks = 6 + rng.below(4);
    for _ in 0..marks {
        let value = if rng.below(2) == 0 { 20.0 } else { 240.0 };
        let x0 = rng.uniform() as f32 * side as f32;
        let y0 = rng.uniform() as f32 * side as f32;
        let (len, angle) = if rng.below(3) == 0 {
            (0.0, 0.0)
        } else {
            ((3.0 + rng.uniform() as f32 * 4.0) * unit, rng.uniform() as f32 * std::f32::consts::PI)
        };
        let steps = (len * 2.0).ceil() as usize + 1;
        let thick = unit.max(1.0);
        for s in 0..steps {
            let t = if steps > 1 { s as f32 / (steps - 1) as f32 } else { 0.0 };
            let (px, py) = (x0 + t * len * angle.cos(), y0 + t * len * angle.sin());
            let reach = thick.ceil() as isize;
            for dy in 0..reach {
                for dx in 0..reach {
                    let (x, y) = (px as isize + dx, py as isize + dy);
                    if x >= 0 && y >= 0 && (x as usize) < side && (y as usize) < side {
                        let i = 3 * (y as usize * side + x as usize);
                        img[i..i + 3].fill(value);
                    }
                }
            }
        }
    }
}

/// 3×3 box blur with clamped borders.
fn box_blur(img: &mut [f32], side: usize) {
    let src = img.to_vec();
    let at = |x: isize, y: isize, c: usize| {
        let x = x.clamp(0, side as isize - 1) as usize;
        let y = y.clamp(0, side as isize - 1) as usize;
        src[3 * (y * side + x) + c]
    };
    for y in 0..side as isize {
        for x in 0..side as isize {
            for c in 0..3 {
                let mut s = 0.0;
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        s += at(x + dx, y + dy, c);
                    }
                }
                img[3 * (y as usize * side + x as usize) + c] = s / 9.0;
            }
        }
    }
}

/// `side`×`side` RGB8 as CLIP input: [3, side, side], `(x/255 − mean)/std`, appended to `out`.
pub fn normalise_into(rgb: &[u8], side: usize, out: &mut Vec<f32>) {
    use crate::image::{CLIP_MEAN, CLIP_STD};
    let n = side * side;
    debug_assert_eq!(rgb.len(), 3 * n);
    for c in 0..3 {
        let (m, s) = (CLIP_MEAN[c], CLIP_STD[c]);
        out.extend((0..n).map(|i| (f32::from(rgb[3 * i + c]) / 255.0 - m) / s));
    }
}
