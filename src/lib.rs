//! hpkv: a user-space replacement for the HPKV kernel module.
//!
//! - [`abi`]: the `/dev/hpkv` contract: limits, command numbers, the `write()` grammar, the
//!   ioctl layouts of both profiles and of the extensions.
//! - [`engine`]: the storage engine on a dedicated block device.
//! - [`cuse`]: the CUSE server that registers `/dev/hpkv` and carries requests and replies.
//! - [`device`]: the device's behaviour: each request served with the engine.
//! - [`client`]: a Rust client for `/dev/hpkv`.
//! - [`ffi`]: every `unsafe` line.

pub mod abi;
pub mod client;
pub mod cuse;
pub mod device;
pub mod engine;
pub mod ffi;
mod le;
