//! Activation planning: every buffer a forward saves for its backward is carved, once, out of
//! one arena sized from the config and the largest batch; the activation-gradient arena has the
//! same layout, so the gradient of a saved buffer is the same handle in the other arena.
use crate::backend::{ArenaId, Buf};

/// Every planned buffer starts at a multiple of this many elements (256 bytes in f32). GPU
/// GEMM kernels that load and store 16 bytes at a time need aligned matrices; packed back to
/// back, one buffer of odd length (a layer norm's per-row statistics for 397 × 77 text rows)
/// left every later one 4-byte aligned, and cuBLAS fell back to slower kernels for them.
pub const ALIGN: usize = 64;

/// Hands out buffers of one arena, in order, each starting [`ALIGN`]ed.
pub struct Planner {
    arena: ArenaId,
    next: usize,
}

impl Planner {
    /// `arena` may be a placeholder while only the total size is wanted.
    pub fn new(arena: ArenaId) -> Self {
        Planner { arena, next: 0 }
    }
    pub fn take(&mut self, len: usize) -> Buf {
        let b = Buf { arena: self.arena, offset: self.next, len };
        self.next = (self.next + len).next_multiple_of(ALIGN);
        b
    }
    /// Elements handed out so far.
    pub fn used(&self) -> usize {
        self.next
    }
}

/// The first `len` elements of a buffer planned for the largest batch.
pub fn head(buf: Buf, len: usize) -> Buf {
    Buf { len, ..buf }
}

/// A value arena and its gradient twin, planned together: losses keep their intermediate
/// values in `vals` and the gradients of those values at the same offsets in `grads`.
#[derive(Clone, Copy, Debug)]
pub struct Scratch {
    pub vals: ArenaId,
    pub grads: ArenaId,
    pub len: usize,
}

impl Scratch {
    /// Runs `plan` once to size the arenas, allocates both, and runs it again for the real
    /// handles (in `vals`).
    pub fn new<B: crate::backend::Backend, T>(
        be: &mut B, plan: impl Fn(&mut Planner) -> T,
    ) -> Result<(Self, T), crate::error::Error> {
        let mut sizing = Planner::new(ArenaId::MAX);
        plan(&mut sizing);
        let vals = be.alloc(sizing.used())?;
        let grads = be.alloc(sizing.used())?;
        let planned = plan(&mut Planner::new(vals));
        Ok((Scratch { vals, grads, len: sizing.used() }, planned))
    }

    /// The gradient slot of a value buffer.
    pub fn d(&self, b: Buf) -> Buf {
        b.in_arena(self.grads)
    }

    /// Zeroes every gradient slot; backward passes then add.
    pub fn zero_grads<B: crate::backend::Backend>(&self, be: &mut B) -> Result<(), crate::error::Error> {
        be.fill(Buf { arena: self.grads, offset: 0, len: self.len }, 0.0)
    }
}
