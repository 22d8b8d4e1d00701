//! Every `unsafe` line of hpkvd lives under this module: the libfuse3 CUSE binding. Each
//! unsafe block states the invariant it relies on. The rest of the daemon sees safe types.
#![allow(unsafe_code)]

#[cfg(test)]
pub mod counting_alloc;
pub mod cuse;
