//! mulki-core: the math of mulki, `no_std` + `alloc`.
#![no_std]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;
