//! Byte-exact codec for everything the C pmxcfs puts on corosync CPG and on
//! its libqb IPC socket. Pure bytes: nom parsers in, little-endian writers
//! out, no I/O and no state.
//!
//! Every message type round-trips: a decoded message re-encodes to the bytes
//! it came from, and values the specification does not name are kept
//! (`Unknown` arms, raw padding), not rejected. Malformed input yields a
//! [`WireError`] naming the message, the field and the byte offset; the
//! length checks are those the receiving C node makes.

pub mod capture;
pub mod clog;
pub mod codec;
pub mod dcdb;
pub mod dfsm;
pub mod digest;
pub mod fuzzing;
pub mod ipc;
pub mod kvstore;
pub mod mutation;

pub use codec::{Codec, ErrorKind, WireError};
