//! A node's state behind one lock: the memdb core, its database and the
//! status store. In local mode a filesystem request is applied directly to
//! memdb with writer 0 and the current time, and its changes are persisted
//! before the request returns (C `-l`).

use std::sync::{Mutex, MutexGuard, OnceLock};

use pmxcfs_wire::dcdb::{FuseMessage, Subtype, UnlockMessage};

use crate::cluster::ClusterLink;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::dcdb::Dcdb;
use crate::core::dfsm::Dfsm;
use crate::core::kvstore::Kvstore;
use crate::core::memdb::{Errno, Memdb, EIO};
use crate::database::Database;
use crate::log;

/// Local mode writes as nodeid 0.
const LOCAL_WRITER: u32 = 0;

/// Everything behind the node's lock. The dfsm machines own the data (the
/// dcdb owns memdb, the kvstore owns the status); in local mode they never
/// see a membership and simply hold it.
pub struct NodeState {
    pub dcdb: Dfsm<Dcdb>,
    pub kvstore: Dfsm<Kvstore>,
    pub db: Database,
}

impl NodeState {
    pub fn memdb(&self) -> &Memdb {
        &self.dcdb.app.memdb
    }

    pub fn memdb_mut(&mut self) -> &mut Memdb {
        &mut self.dcdb.app.memdb
    }

    pub fn kv(&self) -> &Kvstore {
        &self.kvstore.app
    }

    pub fn kv_mut(&mut self) -> &mut Kvstore {
        &mut self.kvstore.app
    }

    /// Local mode counts as quorate; in cluster mode, what corosync says.
    pub fn quorate(&self) -> bool {
        self.dcdb.app.quorate
    }

    /// Persist what the core changed; a failure makes memdb's error flag
    /// sticky (every later mutation is EIO, as in C).
    pub fn persist(&mut self) -> Result<(), Errno> {
        let changes = self.memdb_mut().take_changes();
        if changes.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.db.apply_all(&changes) {
            log::error(&format!(
                "database write failed, refusing further changes: {e}"
            ));
            self.memdb_mut().set_error();
            return Err(EIO);
        }
        Ok(())
    }
}

pub struct Node {
    state: Mutex<NodeState>,
    /// Where RRD samples are written; none in tests that do not care.
    rrd: Option<crate::rrd::RrdWriter>,
    /// In cluster mode: every change goes through corosync.
    cluster: OnceLock<ClusterLink>,
}

/// Seconds since the epoch, truncated to the 32 bits pmxcfs stores.
pub fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Node {
    pub fn new(state: NodeState, rrd: Option<crate::rrd::RrdWriter>) -> Node {
        Node {
            state: Mutex::new(state),
            rrd,
            cluster: OnceLock::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, NodeState> {
        // A panic while holding the lock must not take the filesystem down
        // with it: the state is only changed through complete operations.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn apply<T>(&self, op: impl FnOnce(&mut Memdb, u32) -> Result<T, Errno>) -> Result<T, Errno> {
        let mut s = self.lock();
        let result = op(s.memdb_mut(), now());
        let persisted = s.persist();
        let value = result?;
        persisted?;
        Ok(value)
    }

    /// Switch to cluster mode: from now on changes go through corosync.
    pub fn set_cluster(&self, link: ClusterLink) {
        let _ = self.cluster.set(link);
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// In cluster mode: multicast the operation and wait for the result
    /// its own delivery gives (spec §2.6).
    fn through_cluster(
        &self,
        link: &ClusterLink,
        subtype: Subtype,
        m: FuseMessage,
    ) -> Result<u32, Errno> {
        let mut payload = Vec::new();
        m.encode(&mut payload);
        let r = link.call(subtype.into(), payload);
        if r < 0 {
            Err(-r)
        } else {
            Ok(r as u32)
        }
    }

    fn msg(path: &[u8]) -> FuseMessage {
        FuseMessage {
            path: Some(path.to_vec()),
            ..FuseMessage::default()
        }
    }

    pub fn mkdir(&self, path: &[u8]) -> Result<(), Errno> {
        log_op("mkdir", path);
        if let Some(link) = self.cluster.get() {
            return self
                .through_cluster(link, Subtype::Mkdir, Self::msg(path))
                .map(|_| ());
        }
        self.apply(|m, now| m.mkdir(path, LOCAL_WRITER, now, now))
    }

    pub fn create(&self, path: &[u8]) -> Result<(), Errno> {
        log_op("create", path);
        if let Some(link) = self.cluster.get() {
            return self
                .through_cluster(link, Subtype::Create, Self::msg(path))
                .map(|_| ());
        }
        self.apply(|m, now| m.create(path, LOCAL_WRITER, now))
    }

    pub fn write(&self, path: &[u8], offset: u32, data: &[u8]) -> Result<u32, Errno> {
        log_op(&format!("write {} bytes at {offset}", data.len()), path);
        if let Some(link) = self.cluster.get() {
            let m = FuseMessage {
                offset,
                data: data.to_vec(),
                ..Self::msg(path)
            };
            return self.through_cluster(link, Subtype::Write, m);
        }
        self.apply(|m, now| m.write(path, LOCAL_WRITER, now, data, offset, false))
    }

    pub fn truncate(&self, path: &[u8], size: u32) -> Result<(), Errno> {
        log_op(&format!("truncate to {size}"), path);
        if let Some(link) = self.cluster.get() {
            let m = FuseMessage {
                offset: size,
                flags: 1,
                ..Self::msg(path)
            };
            return self.through_cluster(link, Subtype::Write, m).map(|_| ());
        }
        self.apply(|m, now| {
            m.write(path, LOCAL_WRITER, now, &[], size, true)
                .map(|_| ())
        })
    }

    pub fn delete(&self, path: &[u8]) -> Result<(), Errno> {
        log_op("delete", path);
        if let Some(link) = self.cluster.get() {
            return self
                .through_cluster(link, Subtype::Delete, Self::msg(path))
                .map(|_| ());
        }
        self.apply(|m, now| m.delete(path, LOCAL_WRITER, now))
    }

    pub fn rename(&self, from: &[u8], to: &[u8]) -> Result<(), Errno> {
        log_op(&format!("rename to {}", String::from_utf8_lossy(to)), from);
        if let Some(link) = self.cluster.get() {
            let m = FuseMessage {
                to: Some(to.to_vec()),
                ..Self::msg(from)
            };
            return self.through_cluster(link, Subtype::Rename, m).map(|_| ());
        }
        self.apply(|m, now| m.rename(from, to, LOCAL_WRITER, now))
    }

    /// utimens: an mtime of 0 on a lock directory asks for its release.
    pub fn set_mtime(&self, path: &[u8], mtime: u32) -> Result<(), Errno> {
        log_op(&format!("mtime {mtime}"), path);
        if let Some(link) = self.cluster.get() {
            if mtime == 0 {
                let (csum, quorate) = {
                    let s = self.lock();
                    (s.memdb().lock_checksum(path), s.quorate())
                };
                // Only with quorum, and without waiting (spec §2.4).
                if let (Some(csum), true) = (csum, quorate) {
                    let mut payload = Vec::new();
                    UnlockMessage {
                        csum,
                        path: path.to_vec(),
                    }
                    .encode(&mut payload);
                    link.cast(Subtype::UnlockRequest.into(), payload);
                }
            }
            let m = FuseMessage {
                offset: mtime,
                ..Self::msg(path)
            };
            return self.through_cluster(link, Subtype::Mtime, m).map(|_| ());
        }
        self.apply(|m, now| {
            if mtime == 0 && m.lock_checksum(path).is_some() {
                m.unlock_or_touch(path, LOCAL_WRITER, now)
            } else {
                m.set_mtime(path, LOCAL_WRITER, mtime, now)
            }
        })
    }

    /// Write RRD samples (from IPC or from other nodes).
    pub fn write_rrd(&self, key: &str, value: &[u8]) {
        if let Some(rrd) = &self.rrd {
            rrd.write(key, value, now() as i64);
        }
    }

    /// Answer a `pve2` IPC request. In local mode nothing is broadcast.
    pub fn ipc_request(&self, client: crate::core::ipc::Client, request: &[u8]) -> Vec<u8> {
        let (response, samples) = {
            let mut s = self.lock();
            let NodeState { dcdb, kvstore, .. } = &mut *s;
            let memdb = &dcdb.app.memdb;
            let response = if self.cluster.get().is_some() {
                // Broadcasts (SET_STATUS, LOG) go out through the kvstore.
                kvstore.with_app(now(), |kv, env| {
                    crate::core::ipc::handle(memdb, kv, env, client, request)
                })
            } else {
                let mut env = crate::core::dfsm::Env::detached(now());
                crate::core::ipc::handle(memdb, &mut kvstore.app, &mut env, client, request)
            };
            (response, std::mem::take(&mut kvstore.app.rrd_samples))
        };
        if let Some(link) = self.cluster.get() {
            link.flush();
        }
        // RRD files are written outside the lock: rrdcached may be slow.
        if let Some(rrd) = &self.rrd {
            for (key, value) in samples {
                rrd.write(&key, &value, now() as i64);
            }
        }
        response
    }
}

fn log_op(what: &str, path: &[u8]) {
    if log::debug_enabled() {
        log::debug(&format!("{what} '{}'", String::from_utf8_lossy(path)));
    }
}
