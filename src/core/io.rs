//! What goes into the node core and what comes out of it: the inputs
//! with their time, the requests and replies of local callers, and the
//! output batch ([`Batch`]), which exists only once its changes were handed
//! to [`Storage`]. The node and the engine both speak these types;
//! neither needs the other's.

use super::dfsm::Member;
use super::errno::Errno;
use super::ipc::Client;
use super::logline::{LogLine, Subsystem};
use super::memdb::{DbChange, Row};
use std::collections::BTreeMap;

/// A point on the wall clock, in microseconds since the epoch. pmxcfs
/// stamps its messages and entries with the seconds of it (32 bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    pub fn from_secs(secs: u32) -> Time {
        Time(secs as u64 * 1_000_000)
    }

    /// The seconds as pmxcfs stores them.
    pub fn secs(self) -> u32 {
        (self.0 / 1_000_000) as u32
    }

    pub fn plus_micros(self, us: u64) -> Time {
        Time(self.0.saturating_add(us))
    }
}

/// The two CPG groups of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    Dcdb,
    Kvstore,
}

impl Group {
    pub const ALL: [Group; 2] = [Group::Dcdb, Group::Kvstore];

    /// The group name as C joins it: the NUL is part of the name.
    pub fn cpg_name(self) -> &'static str {
        match self {
            Group::Dcdb => "pve_dcdb_v1\0",
            Group::Kvstore => "pve_kvstore_v1\0",
        }
    }

    /// The group of a CPG name, with or without its NUL.
    pub fn of_name(name: &[u8]) -> Option<Group> {
        let name = pmxcfs_wire::codec::c_str(name);
        Group::ALL
            .into_iter()
            .find(|g| g.cpg_name().trim_end_matches('\0').as_bytes() == name)
    }

    /// The tag of the group's lines in C's log.
    pub fn subsystem(self) -> Subsystem {
        match self {
            Group::Dcdb => Subsystem::Dcdb,
            Group::Kvstore => Subsystem::Status,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Who asked for a local request, so its reply can be routed back.
pub type RequestId = u64;

/// A local request: a FUSE operation on a memdb path (relative to the
/// mount, no leading slash), a write of `/etc/pve/.debug`, or an IPC call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Mkdir {
        path: Vec<u8>,
    },
    Create {
        path: Vec<u8>,
    },
    Write {
        path: Vec<u8>,
        offset: u32,
        data: Vec<u8>,
    },
    Truncate {
        path: Vec<u8>,
        size: u32,
    },
    Delete {
        path: Vec<u8>,
    },
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    /// utimens; an mtime of 0 on a lock directory also asks for its release.
    SetMtime {
        path: Vec<u8>,
        mtime: u32,
    },
    WriteDebug {
        offset: u64,
        data: Vec<u8>,
    },
    Ipc {
        client: Client,
        bytes: Vec<u8>,
    },
}

impl Request {
    /// One line for debug logs (data by its length only).
    pub fn describe(&self) -> String {
        let p = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            Request::Mkdir { path } => format!("mkdir '{}'", p(path)),
            Request::Create { path } => format!("create '{}'", p(path)),
            Request::Write { path, offset, data } => {
                format!("write '{}' {} bytes at {offset}", p(path), data.len())
            }
            Request::Truncate { path, size } => format!("truncate '{}' to {size}", p(path)),
            Request::Delete { path } => format!("delete '{}'", p(path)),
            Request::Rename { from, to } => format!("rename '{}' to '{}'", p(from), p(to)),
            Request::SetMtime { path, mtime } => format!("mtime '{}' {mtime}", p(path)),
            Request::WriteDebug { .. } => "write .debug".into(),
            Request::Ipc { client, bytes } => format!(
                "ipc request of {} bytes from pid {}",
                bytes.len(),
                client.pid
            ),
        }
    }
}

/// The answer to a local request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A file-system operation: its value (bytes written) or an errno.
    Fs(Result<u32, Errno>),
    /// The bytes of an IPC response.
    Ipc(Vec<u8>),
}

/// corosync's view of the cluster, from cmap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    pub name: String,
    pub config_version: u64,
    /// nodeid → node name (`name`, else `ring0_addr`).
    pub nodes: BTreeMap<u32, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// We joined the group (again) as `me`.
    Joined {
        group: Group,
        me: Member,
    },
    /// A CPG configuration change: the member list and whether anyone joined.
    Confchg {
        group: Group,
        members: Vec<Member>,
        joined_any: bool,
    },
    Deliver {
        group: Group,
        from: Member,
        msg: Vec<u8>,
    },
    /// The group's connection ended without a confchg (corosync went away).
    GroupLost {
        group: Group,
    },
    /// The group's CPG connection is up (at start, or again after it was
    /// lost): the node joins if it wants to be in the group.
    Connected {
        group: Group,
    },
    /// What votequorum says; false when the quorum service is lost.
    Quorum {
        quorate: bool,
    },
    ClusterInfo(ClusterInfo),
    Request {
        id: RequestId,
        request: Request,
    },
    /// A message could not be sent (corosync refused it for good).
    SendFailed {
        group: Group,
        bytes: Vec<u8>,
    },
    /// After a failed persist: the database takes writes again; these are
    /// its rows.
    StorageRecovered {
        rows: Vec<Row>,
    },
    /// Run the timers that are due (see [`Node::poll_timeout`]).
    Timers,
    /// The process is up: the first input after [`Node::boot`]. Its batch
    /// persists a new database and, in cluster mode, syncs corosync.conf
    /// and joins both groups.
    Start,
}

/// What the edges do for the node besides persisting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Log(LogLine),
    /// Leave the CPG group (a dfsm error mode).
    LeaveGroup(Group),
    /// Join the CPG group again; report `Input::Joined` once done.
    JoinGroup(Group),
    /// memdb's corosync.conf may be newer than the host's: bring the host's
    /// file up to date (the rule is `corosync_conf::decide`), and reload
    /// corosync if allowed.
    SyncCorosyncConf {
        conf: Option<Vec<u8>>,
        reload: bool,
    },
    /// An RRD sample for the RRD files.
    Rrd {
        key: String,
        value: Vec<u8>,
        time: u32,
    },
    /// Debug logging on or off.
    Debug(bool),
    /// Try a write on the database that failed; report
    /// `Input::StorageRecovered` with its rows if it works.
    ProbeStorage,
    /// The dcdb reached SYNCED for the first time since start.
    FirstSync,
    /// The tree changed in a way the kernel did not ask for (a change from
    /// another node, a lock expired, a sync, quorum and with it every
    /// mode): what the mount's kernel caches hold of it is stale.
    TreeChanged(TreeChange),
}

/// What changed behind the kernel's back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeChange {
    /// These paths (relative to the root), each created, written, removed
    /// or renamed away or onto.
    Paths(Vec<Vec<u8>>),
    /// Anything may have changed.
    All,
}

/// One step of the output batch, after its changes are on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Send { group: Group, bytes: Vec<u8> },
    Reply { id: RequestId, reply: Reply },
    Effect(Effect),
}

/// A persist that did not (completely) happen: how many of the changes
/// handed over were committed, and the database's own account of the
/// failure (logged as `[database] crit` lines).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistFailure {
    pub applied: usize,
    pub lines: Vec<String>,
}

/// Where a node's changes go before anything of their batch leaves it.
pub trait Storage {
    /// Commit the changes, in order; on failure say how many were
    /// committed.
    fn persist(&mut self, changes: &[DbChange]) -> Result<(), PersistFailure>;
}

/// Storage that keeps config.db's rows in memory, as the SQLite edge
/// would hold them (the simulator's and replay's database).
impl Storage for BTreeMap<u64, Row> {
    fn persist(&mut self, changes: &[DbChange]) -> Result<(), PersistFailure> {
        for c in changes {
            c.clone().apply_to(self);
        }
        Ok(())
    }
}

/// One input's output, its changes already persisted (or failed, and its
/// replies changed accordingly): only `Node::step` makes one, so nothing
/// can be sent or replied before it is on disk. The engine performs it.
#[must_use = "a batch must be performed"]
pub struct Batch {
    pub(in crate::core) actions: Vec<Action>,
    /// Rows written by the persist of this batch.
    pub(in crate::core) rows: usize,
}
