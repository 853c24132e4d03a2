//! kdbt's translator: x86-64 kernel code into a code cache, in the fast (BTKernel, Kedia &
//! Bansal SOSP'13) or drk (DRK, Feiner et al. ASPLOS'12) design.
//!
//! `no_std` + `alloc`: the same code runs inside `kdbt.ko` and in host tests.
#![no_std]

extern crate alloc;

pub mod decode;
