//! Everything that relates recorded C traffic to our implementation: the CPG
//! event capture format and the `pmxcfs-replay` tool built on it.

pub mod capture;
pub mod check;
pub mod decode;
pub mod describe;
pub mod drive;
pub mod knet;
pub mod reaction_time;
pub mod shadow;
pub mod sqldump;
pub mod wire_check;
