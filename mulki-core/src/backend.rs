//! The `Backend` trait: raw kernels over buffers, each forward with its hand-written backward.
//!
//! Dims legend: `b` batch, `t` tokens, `c` width, `nh` heads, `hs` head size, `nc` classes,
//! `rows` flattened leading axes.
//!
//! **Addressing.** A backend owns arenas (one flat allocation each: parameters, gradients,
//! activations, activation gradients, moments, ...). Kernels name their operands by `Copy`
//! handles [`Buf`] = (arena, offset, len), resolved by the backend. This lets a kernel read the
//! parameter arena and write the activation arena, or read and write two disjoint parts of one
//! arena, without Rust lending `&mut` and `&` into one allocation at once. Every backend checks,
//! on every call, that each handle lies inside its arena and that no output overlaps another
//! operand; the check is a few comparisons per kernel, so it stays on in release builds.
//!
//! **Accumulation.** Forwards overwrite (`=`) their outputs unless the doc says `+=`. Every
//! backward adds (`+=`) into its `d*` outputs; a step zeroes the gradient arenas once.
use crate::clip::config::HiddenAct;
use crate::elem::Elem;
use crate::error::Error;

/// Index of an arena inside a backend.
pub type ArenaId = u32;

/// A slice of an element arena: `len` elements starting at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf {
    pub arena: ArenaId,
    pub offset: usize,
    pub len: usize,
}

impl Buf {
    /// Elements `[start, start + len)` of this buffer. Panics-free: out-of-range sub-slices are
    /// caught by the backend's bounds check at use.
    pub fn slice(self, start: usize, len: usize) -> Buf {
        Buf { arena: self.arena, offset: self.offset + start, len }
    }
    /// The same range in another arena of the same layout.
    pub fn in_arena(self, arena: ArenaId) -> Buf {
        Buf { arena, ..self }
    }
    pub fn end(self) -> usize {
        self.offset + self.len
    }
    /// Whether the two handles share at least one element.
    pub fn overlaps(&self, other: &Buf) -> bool {
        self.arena == other.arena
            && self.len > 0
            && other.len > 0
            && self.offset < other.end()
            && other.offset < self.end()
    }
}

/// Checks row ids against a table of `table_len / c` rows (embedding gathers and scatters).
pub fn check_ids(ids: &[u32], table_len: usize, c: usize) -> Result<(), Error> {
    let bound = table_len.checked_div(c).unwrap_or(0);
    match ids.iter().find(|&&i| i as usize >= bound) {
        Some(&i) => Err(Error::Index { what: "embedding row", index: i as usize, bound }),
        None => Ok(()),
    }
}

/// A slice of a `u32` index arena (token ids, labels, row indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdxBuf {
    pub arena: ArenaId,
    pub offset: usize,
    pub len: usize,
}

/// Row-major general matrix multiply, batched: for each `i < batch`,
/// `C_i = alpha · op(A_i) · op(B_i) + beta · C_i` with op(A) [m, k], op(B) [k, n], C [m, n].
/// A is stored [m, k] (or [k, m] when `trans_a`), B [k, n] (or [n, k] when `trans_b`), all rows
/// packed. Matrix i starts at `i · stride_*` elements; a stride of 0 broadcasts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f64,
    pub beta: f64,
    pub batch: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    /// The operands may be rounded to the backend's low-precision GEMM type (bf16 on CUDA in
    /// bf16 mode), accumulating in f32: set for the towers' GEMMs, never for the similarity and
    /// loss GEMMs, which stay in the element type. Backends without such a mode ignore it.
    pub low_precision: bool,
}

impl Gemm {
    /// One unbatched product `C = alpha·op(A)·op(B) + beta·C`, in the element type.
    pub fn new(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool, alpha: f64, beta: f64) -> Self {
        let (stride_a, stride_b, stride_c) = (m * k, k * n, m * n);
        Gemm { m, n, k, trans_a, trans_b, alpha, beta, batch: 1, stride_a, stride_b, stride_c, low_precision: false }
    }

    /// The same product, allowed to run in the backend's low-precision mode (a tower GEMM).
    pub fn low_precision(self) -> Self {
        Gemm { low_precision: true, ..self }
    }
}

/// How a GPU backend runs the towers' GEMMs (those marked [`Gemm::low_precision`]); the CPU
/// backend computes every GEMM in its element type. Master weights, optimiser state,
/// normalisation, the similarity GEMMs and the losses stay f32 in every mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Every GEMM in f32, no TF32: the verification mode.
    Fp32,
    /// The backend rounds both operands to bf16 (a pass over each), then multiplies them with
    /// f32 accumulation.
    Bf16,
    /// f32 operands handed to the GEMM library in a mode that may round them to bf16 (or TF32)
    /// inside the GEMM (cuBLAS `CUBLAS_COMPUTE_32F_FAST_16BF`): no rounding passes, and at least
    /// bf16's accuracy.
    FastBf16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Bf16, Precision::FastBf16];

    /// The name in `--device cuda:N:<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::FastBf16 => "fast-bf16",
        }
    }

    /// The mode called `name`, if any.
    pub fn from_name(name: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// `rows` independent rows of `c` elements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rows {
    pub rows: usize,
    pub c: usize,
    /// Epsilon where the op has one (layer norm: added to the variance; L2-normalise: the floor
    /// of the norm); unused otherwise.
    pub eps: f64,
}

/// Broadcast add: `out` viewed as [outer, inner, c], `add` as [inner, c].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bcast {
    pub outer: usize,
    pub inner: usize,
    pub c: usize,
}

/// Multi-head self-attention over packed `qkv` [b, t, 3c] (q, k, v each [b, t, c], heads
/// interleaved as HF reshapes them: head h owns columns `h·hs .. (h+1)·hs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attn {
    pub b: usize,
    pub t: usize,
    pub nh: usize,
    pub hs: usize,
    /// Mask keys after the query position (the text tower).
    pub causal: bool,
}

/// Images [b, channels, side, side] cut into non-overlapping `patch`×`patch` squares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patches {
    pub b: usize,
    pub channels: usize,
    pub side: usize,
    pub patch: usize,
}

impl Patches {
    pub fn grid(&self) -> usize {
        self.side / self.patch
    }
    pub fn per_image(&self) -> usize {
        self.grid() * self.grid()
    }
    pub fn patch_dim(&self) -> usize {
        self.channels * self.patch * self.patch
    }
}

/// Label-smoothed cross-entropy over `rows` rows of `nc` logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ce {
    pub rows: usize,
    pub nc: usize,
    /// ε: the target is (1−ε)·onehot + ε/nc, as `torch.nn.functional.cross_entropy`.
    pub smoothing: f64,
}

/// How [`Backend::teacher_weights`] turns per-teacher statistics into weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightRule {
    Confidence { tau: f64 },
    Discrepancy { scale: f64, threshold: f64 },
}

/// One AdamW step (decoupled weight decay, as `torch.optim.AdamW`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// 1-based step number for bias correction.
    pub step: u64,
    /// A one-element buffer; when it holds a non-finite value the update is skipped, decided on
    /// the device, so a step whose loss or gradient overflowed changes nothing without the host
    /// waiting to look.
    pub guard: Option<Buf>,
}

/// Raw kernels. See the module docs for addressing and accumulation rules.
pub trait Backend {
    type E: Elem;

    // ---- memory ---------------------------------------------------------------------------

    /// Allocates a zeroed element arena of `len` elements.
    fn alloc(&mut self, len: usize) -> Result<ArenaId, Error>;
    /// Allocates a zeroed `u32` index arena.
    fn alloc_idx(&mut self, len: usize) -> Result<ArenaId, Error>;
    /// Host → buffer; `src.len()` must equal `dst.len`.
    fn write(&mut self, dst: Buf, src: &[Self::E]) -> Result<(), Error>;
    /// Buffer → host; `dst.len()` must equal `src.len`.
    fn read(&mut self, src: Buf, dst: &mut [Self::E]) -> Result<(), Error>;
    /// Starts copying `src` to the host without waiting for the device; the next
    /// [`Backend::collect`] returns it, waiting only for the work enqueued before this call. A
    /// training step's values travel this way while the device runs the next step.
    fn stage(&mut self, src: Buf) -> Result<(), Error>;
    /// The values the last [`Backend::stage`] copied; `dst.len()` must equal that buffer's.
    fn collect(&mut self, dst: &mut [Self::E]) -> Result<(), Error>;
    /// Host → index buffer.
    fn write_idx(&mut self, dst: IdxBuf, src: &[u32]) -> Result<(), Error>;
    /// `dst = value` everywhere. No gradient.
    fn fill(&mut self, dst: Buf, value: f64) -> Result<(), Error>;
    /// `dst = src`. No gradient.
    fn copy(&mut self, dst: Buf, src: Buf) -> Result<(), Error>;

    // ---- forward / backward pairs ---------------------------------------------------------

    /// Batched GEMM (see [`Gemm`]), like `torch.baddbmm`. Writes `c = alpha·op(a)·op(b) + beta·c`.
    /// Its backward is two GEMMs with transposed operands (`dA += dC·Bᵀ`, `dB += Aᵀ·dC`),
    /// composed by the callers (`layers::linear`) from this same kernel.
    fn gemm(&mut self, c: Buf, a: Buf, b: Buf, dims: Gemm) -> Result<(), Error>;

    /// Broadcast add, like `out += add` with `add` [inner, c] broadcast over `outer`: a bias
    /// (`inner = 1`) or position embeddings (`inner = t`). Shapes: out [outer, inner, c].
    /// Accumulates (`+=`) into `out`; saves nothing.
    fn broadcast_add_forward(&mut self, out: Buf, add: Buf, dims: Bcast) -> Result<(), Error>;
    /// Gradient of `broadcast_add_forward` w.r.t. `add`: `dadd[r] += Σ_o dout[o, r]`.
    fn broadcast_add_backward(&mut self, dadd: Buf, dout: Buf, dims: Bcast) -> Result<(), Error>;

    /// LayerNorm over the last axis, like `torch.nn.functional.layer_norm` (eps from `dims`).
    /// Shapes: inp, out [rows, c]; weight, bias [c]; mean, rstd [rows].
    /// Writes `out`; saves `mean` and `rstd` for the backward.
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_forward(
        &mut self, out: Buf, mean: Buf, rstd: Buf, inp: Buf, weight: Buf, bias: Buf, dims: Rows,
    ) -> Result<(), Error>;
    /// Gradient of `layer_norm_forward`. Adds into dinp [rows, c], dweight and dbias [c].
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_backward(
        &mut self, dinp: Buf, dweight: Buf, dbias: Buf, dout: Buf, inp: Buf, weight: Buf, mean: Buf, rstd: Buf,
        dims: Rows,
    ) -> Result<(), Error>;

    /// Row softmax, like `torch.softmax(inp, -1)`, max-subtracted. Shapes: inp, out [rows, c].
    /// Writes `out` (which the backward reads back as the saved probabilities).
    fn softmax_forward(&mut self, out: Buf, inp: Buf, dims: Rows) -> Result<(), Error>;
    /// Gradient of `softmax_forward`: `dinp += out ⊙ (dout − Σ dout ⊙ out)`.
    fn softmax_backward(&mut self, dinp: Buf, dout: Buf, out: Buf, dims: Rows) -> Result<(), Error>;

    /// Row log-softmax, like `torch.log_softmax(inp, -1)`, by log-sum-exp.
    /// Shapes: inp, out [rows, c]. Writes `out` (saved for the backward).
    fn log_softmax_forward(&mut self, out: Buf, inp: Buf, dims: Rows) -> Result<(), Error>;
    /// Gradient of `log_softmax_forward`: `dinp += dout − exp(out)·Σ dout`.
    fn log_softmax_backward(&mut self, dinp: Buf, dout: Buf, out: Buf, dims: Rows) -> Result<(), Error>;

    /// Multi-head self-attention as HF `CLIPAttention` after the projections:
    /// `softmax(q·kᵀ/√hs [+ causal mask]) · v` per head. Shapes: qkv [b, t, 3c], out [b, t, c],
    /// probs [b, nh, t, t]. Writes `out`; saves `probs` (masked entries are exactly 0).
    fn attention_forward(&mut self, out: Buf, probs: Buf, qkv: Buf, dims: Attn) -> Result<(), Error>;
    /// Gradient of `attention_forward`. Adds into dqkv [b, t, 3c].
    fn attention_backward(&mut self, dqkv: Buf, dout: Buf, qkv: Buf, probs: Buf, dims: Attn) -> Result<(), Error>;

    /// Elementwise activation, `quick_gelu` (`x·σ(1.702x)`) or exact erf `gelu` as
    /// `torch.nn.functional.gelu`. Shapes: inp, out [n]. Writes `out`; the backward reads `inp`.
    fn act_forward(&mut self, out: Buf, inp: Buf, act: HiddenAct) -> Result<(), Error>;
    /// Gradient of `act_forward`: `dinp += dout · act'(inp)`.
    fn act_backward(&mut self, dinp: Buf, dout: Buf, inp: Buf, act: HiddenAct) -> Result<(), Error>;

    /// Row gather, like `torch.nn.functional.embedding(ids, table)`: `out[i] = table[ids[i]]`.
    /// Also pools rows (class token, EOT token) by flat row index. Shapes: out [ids.len, c],
    /// table [_, c]. Writes `out`. Ids are checked against the table by the caller.
    fn embedding_forward(&mut self, out: Buf, table: Buf, ids: IdxBuf, c: usize) -> Result<(), Error>;
    /// Gradient of `embedding_forward`: scatter-add `dtable[ids[i]] += dout[i]`, in row order.
    fn embedding_backward(&mut self, dtable: Buf, dout: Buf, ids: IdxBuf, c: usize) -> Result<(), Error>;

    /// Cuts images into patch rows (im2col of HF's stride-`patch` `Conv2d`), so the patch
    /// embedding is a GEMM with the conv weight viewed as [c, channels·patch·patch].
    /// Shapes: pixels [b, channels, side, side], out [b, grid², channels·patch·patch], rows in
    /// raster order, columns in the conv weight's (channel, y, x) order. Writes `out`.
    fn patchify_forward(&mut self, out: Buf, pixels: Buf, dims: Patches) -> Result<(), Error>;
    /// Gradient of `patchify_forward`: `dpixels += fold(dout)`.
    fn patchify_backward(&mut self, dpixels: Buf, dout: Buf, dims: Patches) -> Result<(), Error>;

    /// HF `CLIPVisionEmbeddings` after the conv: `out[b] = [class_emb; patch_out[b]] + pos`.
    /// Shapes: patch_out [b, t−1, c], class_emb [c], pos [t, c], out [b, t, c]. Writes `out`.
    #[allow(clippy::too_many_arguments)]
    fn vision_embed_forward(
        &mut self, out: Buf, patch_out: Buf, class_emb: Buf, pos: Buf, b: usize, t: usize, c: usize,
    ) -> Result<(), Error>;
    /// Gradient of `vision_embed_forward`. Adds into dpatch_out, dclass_emb and dpos.
    #[allow(clippy::too_many_arguments)]
    fn vision_embed_backward(
        &mut self, dpatch_out: Buf, dclass_emb: Buf, dpos: Buf, dout: Buf, b: usize, t: usize, c: usize,
    ) -> Result<(), Error>;

    /// Row L2-normalisation, like `torch.nn.functional.normalize(inp, dim=-1, eps)`: divides by
    /// `max(‖x‖, eps)`. Shapes: inp, out [rows, c]; norm [rows]. Writes `out`; saves `norm` (the
    /// unclamped ‖x‖).
    fn l2_normalize_forward(&mut self, out: Buf, norm: Buf, inp: Buf, dims: Rows) -> Result<(), Error>;
    /// Gradient of `l2_normalize_forward`: `dinp += (dout − out·⟨out, dout⟩)/‖x‖` where
    /// ‖x‖ > eps, `dout/eps` where the floor is active.
    fn l2_normalize_backward(&mut self, dinp: Buf, dout: Buf, out: Buf, norm: Buf, dims: Rows) -> Result<(), Error>;

    /// Row dot product `out[r] = ⟨a[r], b[r]⟩`. Shapes: a, b [rows, c]; out [rows]. Writes `out`.
    fn row_dot_forward(&mut self, out: Buf, a: Buf, b: Buf, dims: Rows) -> Result<(), Error>;
    /// Gradient of `row_dot_forward`: `da += dout[r]·b[r]`, `db += dout[r]·a[r]`. Either
    /// gradient may be skipped by passing `None`.
    fn row_dot_backward(
        &mut self, da: Option<Buf>, db: Option<Buf>, dout: Buf, a: Buf, b: Buf, dims: Rows,
    ) -> Result<(), Error>;

    /// Row KL divergence from log-probabilities, `KL(p‖q) = Σ exp(lp)·(lp − lq)` per row, as
    /// `F.kl_div(lq, lp, log_target=True, reduction='none').sum(-1)`. Shapes: p_log, q_log
    /// [rows, c]; out [rows]. Writes `out`.
    fn row_kl_forward(&mut self, out: Buf, p_log: Buf, q_log: Buf, dims: Rows) -> Result<(), Error>;
    /// Gradient of `row_kl_forward`: `dq_log += −dout·exp(lp)`,
    /// `dp_log += dout·exp(lp)·(lp − lq + 1)`; either may be skipped (a detached teacher).
    #[allow(clippy::too_many_arguments)]
    fn row_kl_backward(
        &mut self, dp_log: Option<Buf>, dq_log: Option<Buf>, dout: Buf, p_log: Buf, q_log: Buf, dims: Rows,
    ) -> Result<(), Error>;

    /// Label-smoothed cross-entropy per row, like `F.cross_entropy(logits, targets,
    /// label_smoothing=ε, reduction='none')`: `loss[r] = lse_r − (1−ε)·z[r, y_r] − ε/nc·Σ z[r]`.
    /// Shapes: logits [rows, nc]; targets, loss, lse [rows]. Writes `loss`; saves `lse`.
    fn cross_entropy_forward(
        &mut self, loss: Buf, lse: Buf, logits: Buf, targets: IdxBuf, dims: Ce,
    ) -> Result<(), Error>;
    /// Gradient of `cross_entropy_forward`: `dlogits[r] += dloss[r]·(softmax(z[r]) − target_r)`.
    fn cross_entropy_backward(
        &mut self, dlogits: Buf, dloss: Buf, logits: Buf, lse: Buf, targets: IdxBuf, dims: Ce,
    ) -> Result<(), Error>;

    // ---- no gradient ----------------------------------------------------------------------

    /// Per-sample teacher weights (METHOD.md stage 3), detached. Shapes: alpha [teachers, b].
    /// `Confidence`: `stat` [teachers, b] holds each teacher's −log q (its CE on the true class)
    /// and `alpha[:, i] = softmax_k(exp(−stat[k, i])/τ)`. `Discrepancy`: `stat` [b] holds
    /// ‖v̂^Z − v̂^P‖², teachers = 2, `alpha[1] = σ(scale·(‖·‖ − threshold))`, `alpha[0] = 1 −
    /// alpha[1]`. Writes `alpha`. No gradient.
    fn teacher_weights(
        &mut self, alpha: Buf, stat: Buf, rule: WeightRule, teachers: usize, b: usize,
    ) -> Result<(), Error>;

    /// Prototype EMA (METHOD.md stage 1): for every class c with `counts[c] > 0`,
    /// `π_c = normalize(m·π_c + (1−m)·sums_c/counts_c)` (eps from `dims`); other rows are left
    /// as they are. Shapes: protos, sums [nc, c]; counts [nc]. Skipped when the one-element
    /// `guard` holds a non-finite value (as [`AdamW::guard`]). No gradient.
    fn prototype_ema(
        &mut self, protos: Buf, sums: Buf, counts: Buf, momentum: f64, dims: Rows, guard: Option<Buf>,
    ) -> Result<(), Error>;

    /// `y = a·y`, in place (gradient accumulation's 1/steps). No gradient.
    fn scale(&mut self, y: Buf, a: f64) -> Result<(), Error>;

    /// `y = a·x + b·y`, elementwise (weight ensemble, interpolation, connections). No gradient.
    fn axpby(&mut self, y: Buf, x: Buf, a: f64, b: f64) -> Result<(), Error>;

    /// One AdamW update over a range of the flat buffers, as `torch.optim.AdamW`:
    /// `p −= lr·wd·p; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
    /// p −= lr·(m/(1−β1^k)) / (√(v/(1−β2^k)) + eps)`. No gradient.
    fn adamw(&mut self, params: Buf, grads: Buf, m: Buf, v: Buf, hp: AdamW) -> Result<(), Error>;

    /// Device memory in use, in bytes, where the backend has a device (`None` on the CPU).
    fn device_memory(&mut self) -> Option<u64> {
        None
    }
}
