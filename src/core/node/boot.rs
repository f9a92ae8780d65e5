//! Starting a node on its database: the rules of a new database (the
//! version row, importing the host's corosync.conf), cluster or local
//! mode, and the repairs C makes at start.

use std::collections::{BTreeMap, VecDeque};

use pmxcfs_wire::clog::LogRecord;

use super::super::dcdb::Dcdb;
use super::super::dfsm::{Dfsm, Member};
use super::super::errno::Errno;
use super::super::kvstore::Kvstore;
use super::super::logline::{Level, Subsystem};
use super::super::memdb::{DbChange, LoadError, Memdb, Row};
use super::super::status::Status;
use super::{Effect, Node, Time};

/// Who this node is, from its command line and host.
#[derive(Clone, Debug, Default)]
pub struct NodeConfig {
    /// The short host name.
    pub nodename: String,
    /// Its address as resolved at start (the default `nodeip`).
    pub node_ip: String,
    pub pid: u32,
    /// `-l`: local mode whatever the database holds.
    pub force_local: bool,
    /// `-d`.
    pub debug: bool,
    /// Test option only: a lock expiry other than C's 120 s.
    pub lock_timeout: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootError {
    /// The database's rows do not form a tree C would load.
    Load(LoadError),
    /// The host's corosync.conf cannot be imported into a new database.
    Import(Errno),
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootError::Load(e) => write!(f, "{e}"),
            BootError::Import(e) => write!(
                f,
                "cannot import corosync.conf: {}",
                std::io::Error::from_raw_os_error(*e)
            ),
        }
    }
}

impl Node {
    /// Start a node on its database (`rows`; `None` for a new one). A new
    /// database gets its version row and, unless in local mode, imports
    /// the host's corosync.conf; the node is in cluster mode when its
    /// database holds corosync.conf and `-l` was not given.
    pub fn boot(
        config: NodeConfig,
        rows: Option<Vec<Row>>,
        host_corosync_conf: Option<&[u8]>,
        now: Time,
    ) -> Result<Node, BootError> {
        let start = now.secs();
        let mut status = Status::new(&config.nodename, start);
        status.debug = config.debug;
        if let Some(entry) = status.clog.pack(&LogRecord {
            node: config.nodename.as_bytes(),
            ident: b"root",
            tag: b"cluster",
            pid: config.pid,
            time: start,
            priority: 6,
            msg: b"starting cluster log",
        }) {
            status.clog.insert(&entry);
        }
        let new_database = rows.is_none();
        let (mut memdb, first) =
            Memdb::from_rows(rows.unwrap_or_default(), start).map_err(BootError::Load)?;
        if let Some(secs) = config.lock_timeout {
            memdb.locks.set_timeout(secs);
        }
        let mut persist: Vec<DbChange> = first.into_iter().collect();
        let repaired = memdb.repair_version();
        if new_database && !config.force_local {
            if let Some(conf) = host_corosync_conf {
                memdb
                    .create(b"corosync.conf", 0, start)
                    .map_err(BootError::Import)?;
                memdb
                    .write(b"corosync.conf", 0, start, conf, 0, true)
                    .map_err(BootError::Import)?;
            }
        }
        persist.extend(memdb.take_changes());
        let cluster_mode =
            !config.force_local && memdb.lookup(b"corosync.conf").is_some_and(|e| !e.is_dir());
        let me = Member {
            nodeid: 0,
            pid: config.pid,
        };
        let mut dcdb = Dcdb::new(memdb);
        // Local mode counts as quorate; cluster mode waits for corosync.
        dcdb.quorate = !cluster_mode;
        let mut kvstore = Kvstore::new(status, &config.node_ip);
        kvstore.quorate = !cluster_mode;
        let mut node = Node {
            dcdb: Dfsm::new(dcdb, me),
            kvstore: Dfsm::new(kvstore, me),
            config,
            cluster_mode,
            persist,
            sends: VecDeque::new(),
            replies: VecDeque::new(),
            effects: VecDeque::new(),
            waiters: BTreeMap::new(),
            joined: [false; 2],
            wanted: [false; 2],
            last_join: [None; 2],
            mode_since: [now; 2],
            rejoin_at: [None; 2],
            storage_probe_at: None,
            verify_last: start,
            synced_once: false,
            counters: Default::default(),
        };
        if let Some((old, new)) = repaired {
            node.log(
                Subsystem::Database,
                Level::Crit,
                format!(
                    "database version {old} is lower than an entry's ({new}) - raised to {new}"
                ),
            );
        }
        if cluster_mode {
            // C syncs the host's corosync.conf at start, reload allowed.
            node.effects.push_back(Effect::SyncCorosyncConf {
                conf: node.corosync_conf(),
                reload: true,
            });
        }
        Ok(node)
    }
}
