//! Which GEMM operands already have an up-to-date bf16 copy, and where.
//!
//! In bf16 mode a tower GEMM reads its operands rounded to bf16. A linear layer's input is read
//! by its forward GEMM and again by its weight gradient's, its output gradient by both backward
//! GEMMs, its weight forward and backward (a frozen teacher's at every step): rounding each
//! operand at every use converted the same values up to three times. [`Rounded`] remembers, for
//! each operand range of an arena, a bf16 copy in one device pool, until a write to any
//! overlapping range makes it stale; the backend then rounds again into the same place.
//!
//! Attention's q, k, v, rounded and permuted head-major by the forward, are kept the same way
//! (as [`Form::Heads`] of the packed qkv range), so the backward does not permute them again.
//!
//! A kernel that writes a tower GEMM's next operand (a layer norm's output, an activation, a
//! gradient a linear layer's backward reads) takes a place here too ([`Rounded::produce`]) and
//! writes the bf16 copy beside its f32 result, so the GEMM finds it up to date and no separate
//! pass reads the f32 values again.
//!
//! The pool's size is fixed when it is made, so device memory does not change from task to task.
//! When a new operand does not fit, every entry is dropped and the pool filled again from the
//! start: with a pool smaller than a step's operands, later entries replace earlier ones and
//! each operand is rounded as often as without the pool, never more. A rounded copy holds the
//! same bits whenever it is made, so results do not depend on the pool at all.
use std::collections::HashMap;

/// How a copy lays out its source's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Form {
    /// Element for element.
    Plain,
    /// Packed qkv `[b, t, 3, nh, hs]` as head-major q, k, v `[3, b, nh, t, hs]`.
    Heads([usize; 4]),
}

/// An operand: `len` elements from `start` of arena `arena`, in form `form`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    arena: u32,
    start: usize,
    len: usize,
    form: Form,
}

struct Entry {
    key: Key,
    /// Element offset of the copy in the pool.
    at: usize,
    fresh: bool,
}

/// Where an operand's bf16 copy is: `P` is its element offset in the pool here, a device
/// pointer in the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placed<P = usize> {
    /// Here, up to date.
    Fresh(P),
    /// Here, to be rounded (again) by the caller now.
    Round(P),
    /// No room in the pool (beside the other operands): the caller rounds it into scratch.
    NoRoom,
}

impl<P> Placed<P> {
    /// The same copy with its position mapped by `f`.
    pub(crate) fn map<Q>(self, f: impl FnOnce(P) -> Q) -> Placed<Q> {
        match self {
            Placed::Fresh(p) => Placed::Fresh(f(p)),
            Placed::Round(p) => Placed::Round(f(p)),
            Placed::NoRoom => Placed::NoRoom,
        }
    }
}

/// How the pool served operands, counted since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUse {
    /// The pool's size.
    pub capacity_bytes: u64,
    /// Operands whose copy was up to date: one rounding saved each.
    pub reused: u64,
    /// Operands rounded into the pool.
    pub rounded: u64,
    /// Copies written into the pool by the kernel that wrote their source.
    pub produced: u64,
    /// Operands rounded outside it, for want of room.
    pub refused: u64,
    /// Times the pool was full and started again from empty.
    pub restarts: u64,
}

/// The pool's bookkeeping (host only; the backend owns the device memory).
pub(crate) struct Rounded {
    /// Pool size in bf16 elements.
    capacity: usize,
    /// Every copy starts at a multiple of this many elements (cuBLAS's fastest kernels want
    /// aligned operands).
    align: usize,
    used: usize,
    entries: Vec<Entry>,
    by_key: HashMap<Key, usize>,
    /// Per arena: its entries' indices in order of `start`, and the longest entry's length
    /// (so a write's overlaps are found by a binary search, not a scan).
    by_arena: Vec<(Vec<usize>, usize)>,
    counts: PoolUse,
}

impl Rounded {
    pub(crate) fn new(capacity: usize, align: usize) -> Self {
        Rounded {
            capacity,
            align: align.max(1),
            used: 0,
            entries: Vec::new(),
            by_key: HashMap::new(),
            by_arena: Vec::new(),
            counts: PoolUse { capacity_bytes: 2 * capacity as u64, ..PoolUse::default() },
        }
    }

    /// The bf16 copies, in `form`, of the operands `(arena, start, len)` a GEMM (or attention)
    /// reads now, placed together (see [`Self::place_all`]), so placing one never overwrites
    /// another.
    pub(crate) fn lookup<const N: usize>(&mut self, form: Form, operands: [(u32, usize, usize); N]) -> [Placed; N] {
        let copies = self.place_all(form, operands);
        for c in copies {
            match c {
                Placed::Fresh(_) => self.counts.reused += 1,
                Placed::Round(_) => self.counts.rounded += 1,
                Placed::NoRoom => self.counts.refused += 1,
            }
        }
        copies
    }

    /// Where the kernel about to write elements `start..start + len` of `arena` also writes
    /// their bf16 copy (its element offset in the pool); `None` without room. The copy counts as
    /// up to date from now on, as a looked-up one does.
    pub(crate) fn produce(&mut self, arena: u32, start: usize, len: usize) -> Option<usize> {
        match self.place_all(Form::Plain, [(arena, start, len)]) {
            [Placed::Fresh(at) | Placed::Round(at)] => {
                self.counts.produced += 1;
                Some(at)
            }
            [Placed::NoRoom] => None,
        }
    }

    /// Places the copies of `operands` together: when the new ones do not fit beside the pool's
    /// entries but all of them fit in an empty pool, the pool starts again before any is placed.
    fn place_all<const N: usize>(&mut self, form: Form, operands: [(u32, usize, usize); N]) -> [Placed; N] {
        let keys = operands.map(|(arena, start, len)| Key { arena, start, len, form });
        let distinct = |i: &usize| !keys[..*i].contains(&keys[*i]);
        let new = (0..N).filter(distinct).filter(|&i| !self.by_key.contains_key(&keys[i])).map(|i| keys[i].len);
        let all = (0..N).filter(distinct).map(|i| keys[i].len);
        if self.end_of(self.used, new) > self.capacity && self.end_of(0, all) <= self.capacity {
            self.clear();
            self.counts.restarts += 1;
        }
        keys.map(|k| self.place(k))
    }

    pub(crate) fn counts(&self) -> PoolUse {
        self.counts
    }

    /// Where copies of `lens`, placed in turn from `from`, would end.
    fn end_of(&self, from: usize, lens: impl Iterator<Item = usize>) -> usize {
        lens.fold(from, |at, n| at.next_multiple_of(self.align).saturating_add(n))
    }

    fn place(&mut self, key: Key) -> Placed {
        if let Some(&i) = self.by_key.get(&key) {
            let e = &mut self.entries[i];
            let was_fresh = std::mem::replace(&mut e.fresh, true);
            return if was_fresh { Placed::Fresh(e.at) } else { Placed::Round(e.at) };
        }
        let at = self.used.next_multiple_of(self.align);
        if at.saturating_add(key.len) > self.capacity {
            return Placed::NoRoom;
        }
        self.used = at + key.len;
        let i = self.entries.len();
        self.entries.push(Entry { key, at, fresh: true });
        self.by_key.insert(key, i);
        let a = key.arena as usize;
        if self.by_arena.len() <= a {
            self.by_arena.resize_with(a + 1, Default::default);
        }
        let (order, longest) = &mut self.by_arena[a];
        let pos = order.partition_point(|&j| self.entries[j].key.start <= key.start);
        order.insert(pos, i);
        *longest = (*longest).max(key.len);
        Placed::Round(at)
    }

    /// Elements `start..start + len` of `arena` are about to be written: every copy of an
    /// overlapping range is stale from now on.
    pub(crate) fn written(&mut self, arena: u32, start: usize, len: usize) {
        let Some((order, longest)) = self.by_arena.get(arena as usize) else { return };
        let end = start.saturating_add(len);
        // An entry starting before `start - longest` ends before `start`.
        let from = order.partition_point(|&j| self.entries[j].key.start + longest <= start);
        for &j in &order[from..] {
            let k = self.entries[j].key;
            if k.start >= end {
                break;
            }
            if k.start + k.len > start {
                self.entries[j].fresh = false;
            }
        }
    }

    fn clear(&mut self) {
        self.used = 0;
        self.entries.clear();
        self.by_key.clear();
        self.by_arena.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::{Form, Placed, Rounded};

    fn one(r: &mut Rounded, arena: u32, start: usize, len: usize) -> Placed {
        r.lookup(Form::Plain, [(arena, start, len)])[0]
    }

    #[test]
    fn a_copy_is_reused_until_its_source_is_written() {
        let mut r = Rounded::new(100, 1);
        assert_eq!(one(&mut r, 0, 10, 20), Placed::Round(0));
        assert_eq!(one(&mut r, 0, 10, 20), Placed::Fresh(0));
        assert_eq!(one(&mut r, 1, 10, 20), Placed::Round(20), "another arena is another operand");
        assert_eq!(one(&mut r, 0, 10, 5), Placed::Round(40), "another extent is another operand");
        r.written(0, 29, 1); // the last element of 10..30 only
        assert_eq!(one(&mut r, 0, 10, 20), Placed::Round(0));
        assert_eq!(one(&mut r, 0, 10, 5), Placed::Fresh(40));
        assert_eq!(one(&mut r, 1, 10, 20), Placed::Fresh(20));
        r.written(0, 30, 50); // just after 10..30
        r.written(0, 0, 10); // just before
        r.written(1, 0, 0); // empty
        assert_eq!(one(&mut r, 0, 10, 20), Placed::Fresh(0));
        assert_eq!(one(&mut r, 1, 10, 20), Placed::Fresh(20));
        r.written(1, 0, 1000);
        assert_eq!(one(&mut r, 1, 10, 20), Placed::Round(20));
        r.written(7, 0, 1000); // an arena without entries
    }

    #[test]
    fn a_long_entry_before_the_write_is_found() {
        let mut r = Rounded::new(1000, 1);
        one(&mut r, 0, 0, 500); // long, starts far before the write
        for s in 1..20 {
            one(&mut r, 0, 10 * s, 5);
        }
        r.written(0, 400, 1);
        assert_eq!(one(&mut r, 0, 0, 500), Placed::Round(0));
        assert_eq!(one(&mut r, 0, 100, 5), Placed::Fresh(500 + 9 * 5));
    }

    #[test]
    fn a_full_pool_starts_again_and_an_oversized_operand_is_refused() {
        let mut r = Rounded::new(50, 1);
        assert_eq!(one(&mut r, 0, 0, 30), Placed::Round(0));
        assert_eq!(one(&mut r, 0, 100, 30), Placed::Round(0), "no room: the pool starts again");
        assert_eq!(one(&mut r, 0, 0, 30), Placed::Round(0), "the dropped entry is rounded again");
        assert_eq!(one(&mut r, 0, 200, 51), Placed::NoRoom);
        assert_eq!(one(&mut r, 0, 0, 30), Placed::Fresh(0));
    }

    #[test]
    fn the_second_operand_never_overwrites_the_first() {
        let mut r = Rounded::new(50, 1);
        assert_eq!(one(&mut r, 0, 0, 20), Placed::Round(0));
        assert_eq!(one(&mut r, 0, 100, 20), Placed::Round(20));
        // A is fresh at 20..40 and B does not fit beside the pool's entries: the pool starts
        // again before either is placed, so A is rounded again, not read where B now lies.
        assert_eq!(r.lookup(Form::Plain, [(0, 100, 20), (0, 200, 20)]), [Placed::Round(0), Placed::Round(20)]);
        assert_eq!(r.lookup(Form::Plain, [(0, 100, 20), (0, 200, 20)]), [Placed::Fresh(0), Placed::Fresh(20)]);
        // Both new and together larger than the pool: neither is placed, nothing is dropped.
        assert_eq!(r.lookup(Form::Plain, [(1, 0, 30), (1, 100, 30)]), [Placed::NoRoom, Placed::NoRoom]);
        assert_eq!(one(&mut r, 0, 200, 20), Placed::Fresh(20));
        // The same operand twice needs room once.
        assert_eq!(r.lookup(Form::Plain, [(2, 0, 40), (2, 0, 40)]), [Placed::Round(0), Placed::Fresh(0)]);
        let c = r.counts();
        assert_eq!((c.capacity_bytes, c.reused, c.rounded, c.refused, c.restarts), (100, 4, 5, 2, 2));
    }

    #[test]
    fn a_present_operand_beside_an_oversized_pair_does_not_wipe_the_pool() {
        let mut r = Rounded::new(50, 1);
        assert_eq!(one(&mut r, 0, 0, 10), Placed::Round(0));
        assert_eq!(one(&mut r, 0, 100, 30), Placed::Round(10));
        // (0, 100, 30) is present; the new 25 does not fit beside the entries, and the two
        // together (55) would not fit an empty pool either: nothing is dropped.
        assert_eq!(r.lookup(Form::Plain, [(0, 100, 30), (0, 200, 25)]), [Placed::Fresh(10), Placed::NoRoom]);
        assert_eq!(one(&mut r, 0, 0, 10), Placed::Fresh(0));
    }

    #[test]
    fn another_form_of_the_same_range_is_another_copy_made_stale_by_the_same_writes() {
        let mut r = Rounded::new(1000, 1);
        let heads = Form::Heads([2, 5, 3, 4]);
        assert_eq!(one(&mut r, 0, 0, 120), Placed::Round(0));
        assert_eq!(r.lookup(heads, [(0, 0, 120)]), [Placed::Round(120)]);
        assert_eq!(r.lookup(heads, [(0, 0, 120)]), [Placed::Fresh(120)]);
        assert_eq!(r.lookup(Form::Heads([4, 5, 3, 2]), [(0, 0, 120)]), [Placed::Round(240)], "other dims");
        r.written(0, 119, 1);
        assert_eq!(r.lookup(heads, [(0, 0, 120)]), [Placed::Round(120)]);
        assert_eq!(one(&mut r, 0, 0, 120), Placed::Round(0));
    }

    #[test]
    fn copies_start_aligned() {
        let mut r = Rounded::new(1000, 128);
        assert_eq!(r.lookup(Form::Plain, [(0, 0, 5), (0, 10, 300)]), [Placed::Round(0), Placed::Round(128)]);
        assert_eq!(one(&mut r, 0, 500, 7), Placed::Round(512));
        // 512 + 7 rounds up to 640; 640 + 400 > 1000, and the two would fit an empty pool.
        assert_eq!(r.lookup(Form::Plain, [(1, 0, 400), (1, 0, 400)]), [Placed::Round(0), Placed::Fresh(0)]);
        assert_eq!(one(&mut r, 0, 0, 5), Placed::Round(512), "dropped by the clear, placed after 0..400");
    }

    #[test]
    fn a_produced_copy_serves_the_next_lookup_until_its_source_is_written() {
        let mut r = Rounded::new(100, 1);
        assert_eq!(r.produce(0, 10, 20), Some(0));
        assert_eq!(one(&mut r, 0, 10, 20), Placed::Fresh(0), "no rounding after the producer");
        r.written(0, 15, 1);
        assert_eq!(r.produce(0, 10, 20), Some(0), "the producer writes it again in its place");
        assert_eq!(one(&mut r, 0, 10, 20), Placed::Fresh(0));
        assert_eq!(one(&mut r, 0, 12, 5), Placed::Round(20), "part of a copy is another operand");
        assert_eq!(r.produce(1, 0, 80), Some(0), "no room beside the others: the pool starts again");
        assert_eq!(one(&mut r, 0, 10, 20), Placed::Round(80));
        assert_eq!(r.produce(1, 100, 101), None, "larger than the pool");
        assert_eq!(one(&mut r, 1, 0, 80), Placed::Fresh(0), "a refused producer drops nothing");
        let c = r.counts();
        assert_eq!((c.produced, c.reused, c.rounded, c.refused, c.restarts), (3, 3, 2, 0, 1));
    }
}
