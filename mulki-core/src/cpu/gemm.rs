//! GEMM on matrixmultiply, batched and split into fixed blocks of rows (or columns when there
//! are few rows) so threads never change which products are summed together.
//! Dims legend: C [m, n] = alpha·op(A) [m, k] · op(B) [k, n] + beta·C.
use super::pool::{chunk_range, Pool, SyncPtr};
use crate::backend::Gemm;
use crate::elem::Elem;

/// Element types matrixmultiply multiplies.
pub trait CpuElem: Elem {
    /// `v[i] = exp(v[i])`: f32 by a vectorised polynomial within 2 ulp ([`super::vmath`]), f64
    /// by the scalar `exp` (the finite-difference checks).
    fn exp_in_place(v: &mut [Self]);
    /// # Safety
    /// The pointers and strides describe valid, non-overlapping (for `c`) matrices.
    #[allow(clippy::too_many_arguments)]
    unsafe fn mm(
        m: usize, k: usize, n: usize, alpha: Self, a: *const Self, rsa: isize, csa: isize, b: *const Self, rsb: isize,
        csb: isize, beta: Self, c: *mut Self, rsc: isize, csc: isize,
    );
}

impl CpuElem for f32 {
    fn exp_in_place(v: &mut [f32]) {
        super::vmath::exp_in_place_f32(v)
    }
    unsafe fn mm(
        m: usize, k: usize, n: usize, alpha: f32, a: *const f32, rsa: isize, csa: isize, b: *const f32, rsb: isize,
        csb: isize, beta: f32, c: *mut f32, rsc: isize, csc: isize,
    ) {
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl CpuElem for f64 {
    fn exp_in_place(v: &mut [f64]) {
        for x in v {
            *x = num_traits::Float::exp(*x);
        }
    }
    unsafe fn mm(
        m: usize, k: usize, n: usize, alpha: f64, a: *const f64, rsa: isize, csa: isize, b: *const f64, rsb: isize,
        csb: isize, beta: f64, c: *mut f64, rsc: isize, csc: isize,
    ) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

/// Target rows (or columns) per task: larger blocks repack the other operand less often.
const BLOCK: usize = 256;
/// Block sizes are multiples of this (the micro-kernels' register tile height).
const ALIGN: usize = 16;
/// Below this many multiply-adds a product is not split at all.
const MIN_SPLIT_WORK: usize = 1 << 20;

/// How to cut one product into tasks: along rows of C (`split_m`) or along its columns, into
/// `blocks` blocks of `size`. Chosen from the dims alone. Each task repacks the operand it does
/// not split, so the longer side of C is split, into few large blocks of balanced sizes; an even
/// block count keeps two threads equally busy.
fn partition(m: usize, n: usize, k: usize) -> (bool, usize, usize) {
    let split_m = m >= n;
    let len = if split_m { m } else { n };
    let mut blocks = len.div_ceil(BLOCK);
    if m * n * k < MIN_SPLIT_WORK || len < 2 * ALIGN {
        blocks = 1;
    } else if blocks % 2 == 1 {
        blocks += 1;
    }
    let size = len.div_ceil(blocks).div_ceil(ALIGN) * ALIGN;
    (split_m, len.div_ceil(size.max(1)).max(1), size.max(1))
}

/// `c = alpha·op(a)·op(b) + beta·c` per batch item; operand extents are checked by the caller.
pub(crate) fn gemm<E: CpuElem>(pool: &Pool, c: &mut [E], a: &[E], b: &[E], g: Gemm) {
    let (m, n, k) = (g.m, g.n, g.k);
    let (rsa, csa) = if g.trans_a { (1, m) } else { (k, 1) };
    let (rsb, csb) = if g.trans_b { (1, k) } else { (n, 1) };
    let (split_m, blocks, size) = partition(m, n, k);
    let (bm, bn) = if split_m { (size, n) } else { (m, size) };
    let cp = SyncPtr::new(c);
    let (alpha, beta) = (E::from_f64(g.alpha), E::from_f64(g.beta));
    pool.run(g.batch * blocks, bm.min(m) * bn.min(n) * k, |task| {
        let (i, blk) = (task / blocks, task % blocks);
        let (rows, cols) = if split_m { (chunk_range(blk, m, bm), 0..n) } else { (0..m, chunk_range(blk, n, bn)) };
        let a_off = i * g.stride_a + rows.start * rsa;
        let b_off = i * g.stride_b + cols.start * csb;
        let c_off = i * g.stride_c + rows.start * n + cols.start;
        // SAFETY: bounds were checked by the caller for the whole batch; blocks write disjoint
        // parts of C.
        unsafe {
            E::mm(
                rows.len(),
                k,
                cols.len(),
                alpha,
                a.as_ptr().add(a_off),
                rsa as isize,
                csa as isize,
                b.as_ptr().add(b_off),
                rsb as isize,
                csb as isize,
                beta,
                cp.ptr().add(c_off),
                n as isize,
                1,
            );
        }
    });
}

/// Minimum lengths of A, B and C for `g`, for the bounds check.
pub(crate) fn extents(g: Gemm) -> (usize, usize, usize) {
    let last = |stride: usize, size: usize| {
        if g.batch == 0 || size == 0 {
            0
        } else {
            (g.batch - 1) * stride + size
        }
    };
    (last(g.stride_a, g.m * g.k), last(g.stride_b, g.k * g.n), last(g.stride_c, g.m * g.n))
}
