//! pmxcfs: the Proxmox VE cluster configuration filesystem.
//!
//! `core` holds the rules as pure state (sans-IO). Around it, the edges do
//! the I/O: `database` (SQLite), `fuse` (the /etc/pve mount), `daemon`
//! (command line, files, signals). `node` binds the core to its edges.

pub mod cluster;
pub mod core;
pub mod daemon;
pub mod database;
pub mod fuse;
pub mod ipc;
pub mod log;
pub mod node;
pub mod rrd;
pub mod sim;
