//! The sans-IO core: protocol and filesystem rules as plain state. Inputs
//! are requests with the time they happen at; outputs are results and the
//! changes to persist. No sockets, files, threads or clocks in here.

pub mod clog;
pub mod corosync_conf;
pub mod dbcheck;
pub mod dbexport;
pub mod dbrepair;
pub mod dcdb;
pub mod dfsm;
pub mod engine;
pub mod errno;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod io;
pub mod ipc;
pub mod kvstore;
pub mod locks;
pub mod logline;
pub mod memdb;
pub mod metrics;
pub mod node;
pub mod paths;
pub mod requests;
pub mod rrd;
pub mod status;
pub mod vmlist;
