//! Activation planning: every buffer a forward saves for its backward is carved, once, out of
//! one arena sized from the config and the largest batch; the activation-gradient arena has the
//! same layout, so the gradient of a saved buffer is the same handle in the other arena.
use crate::backend::{ArenaId, Buf};

/// Hands out consecutive buffers of one arena.
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
        let b = Buf {
            arena: self.arena,
            offset: self.next,
            len,
        };
        self.next += len;
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
