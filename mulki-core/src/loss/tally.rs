//! Loss values kept on the device. Each value a loss reports is a few sums `Σ a[i]·w[i]` (or
//! `Σ a[i]`) of per-row buffers; each sum is taken by one row-dot into its own slot, and the
//! host combines the slots once it reads them. So a training step reads its values in one
//! transfer, when the host wants them, instead of waiting for the device at every term.
use alloc::vec;
use alloc::vec::Vec;

use crate::backend::{Backend, Buf, Rows};
use crate::elem::Elem;
use crate::error::Error;

/// `slots` sum slots and a vector of ones (the weights of an unweighted sum).
#[derive(Clone, Copy, Debug)]
pub struct Tally {
    slots: Buf,
    ones: Buf,
}

impl Tally {
    /// Slots for `slots` sums of at most `max_len` elements each, in an arena of their own.
    pub fn new<B: Backend>(be: &mut B, slots: usize, max_len: usize) -> Result<Self, Error> {
        let arena = be.alloc(slots + max_len)?;
        let ones = Buf { arena, offset: slots, len: max_len };
        be.fill(ones, 1.0)?;
        Ok(Tally { slots: Buf { arena, offset: 0, len: slots }, ones })
    }

    /// Slots `start..start + len`, sharing the ones: a part handed to a component loss.
    pub fn part(self, start: usize, len: usize) -> Self {
        Tally { slots: self.slots.slice(start, len), ..self }
    }

    /// The slots, for a caller that copies them elsewhere before reading.
    pub fn slots(&self) -> Buf {
        self.slots
    }

    /// `slot ← Σ a[i]·w[i]`, or `Σ a[i]` without `w`.
    pub fn sum<B: Backend>(&self, be: &mut B, slot: usize, a: Buf, w: Option<Buf>) -> Result<(), Error> {
        if slot >= self.slots.len || a.len > self.ones.len {
            return Err(Error::Capacity { what: "tally sum", max: self.ones.len, got: a.len.max(slot) });
        }
        let w = w.unwrap_or(self.ones.slice(0, a.len));
        be.row_dot_forward(self.slots.slice(slot, 1), a, w, Rows { rows: 1, c: a.len, eps: 0.0 })
    }

    /// Reads every slot (waits for the device).
    pub fn read<B: Backend>(&self, be: &mut B) -> Result<Vec<f64>, Error> {
        let mut v = vec![B::E::default(); self.slots.len];
        be.read(self.slots, &mut v)?;
        Ok(v.iter().map(|x| x.to_f64()).collect())
    }
}
