//! pmxcfs: the Proxmox VE cluster configuration filesystem.
//!
//! `core` holds every rule as pure state (sans-IO): the node, its dfsm
//! machines, memdb, the IPC answers, what /etc/pve shows. `sim` drives it
//! as an in-process cluster, `database` reads and writes config.db. With
//! the `daemon` feature come the edges of the running daemon: the FUSE
//! mount, the libqb IPC server, corosync, RRD files, the log, and `host`,
//! which shares the core between them. Without it (what `pmxcfs-replay`
//! builds on) nothing needs corosync, libqb or FUSE.

pub mod core;
pub mod database;
pub mod dbtools;
pub mod sim;

#[cfg(feature = "daemon")]
pub mod cli;
#[cfg(feature = "daemon")]
pub mod corosync;
#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "daemon")]
pub mod fuse;
#[cfg(feature = "daemon")]
pub mod host;
#[cfg(feature = "daemon")]
pub mod ipc;
#[cfg(feature = "daemon")]
pub mod log;
#[cfg(feature = "daemon")]
pub mod metrics;
#[cfg(feature = "daemon")]
pub mod record;
#[cfg(feature = "daemon")]
pub mod rrd;
#[cfg(feature = "daemon")]
pub mod stats;
