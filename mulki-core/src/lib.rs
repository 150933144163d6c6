//! mulki-core: the math of mulki, `no_std` + `alloc`: the [`Backend`] trait, the CPU backend
//! (feature `cpu`), the CLIP model, the optimiser and schedule.
#![no_std]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod arena;
pub mod backend;
pub mod clip;
#[cfg(feature = "cpu")]
pub mod cpu;
pub mod elem;
pub mod error;
pub mod layers;
pub mod loss;
pub mod method;
pub mod metrics;
pub mod optim;
pub mod rng;

pub use backend::{Backend, Buf, IdxBuf};
pub use elem::Elem;
pub use error::Error;
