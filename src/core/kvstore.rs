//! kvstore: node status and the cluster log (spec §3) as a dfsm
//! application. Every node broadcasts its own keys; the STATE is the
//! cluster-log ring, merged (not led) at each membership change.

use std::collections::{BTreeMap, BTreeSet};

use pmxcfs_wire::clog::{ClogBuffer, ClogEntry, LogRecord};
use pmxcfs_wire::kvstore::{KvUpdate, Subtype, MAX_STATUS_SIZE, PROTOCOL_VERSION};
use pmxcfs_wire::Codec;

use super::dfsm::{App, Delivery, Env, Member, MemberState};
use super::errno::Errno;
use super::logline::Level;
use super::status::{KvEntry, Status};

use super::errno::{EACCES, EFBIG, ENOMEM};

/// Longest rrd value (NUL included) and nodeip value accepted.
const MAX_RRD_LEN: usize = 4096;
const MAX_NODEIP_LEN: usize = 256;
/// How long an RRD entry is kept without an update: the `.rrd` dump leaves
/// out entries older than 300 s (C), so older ones are dropped.
pub const RRD_KEEP_SECS: u32 = 300;
/// RRD entries held at most (a PVE cluster has one per node, guest and
/// storage; a peer that sends more is refused, as a value too large).
pub const MAX_RRD_KEYS: usize = 100_000;
/// Generic status keys per node (PVE sets a handful).
pub const MAX_KEYS_PER_NODE: usize = 1024;

pub struct Kvstore {
    pub status: Status,
    /// When stale RRD entries were last dropped.
    rrd_pruned_at: u32,
    /// corosync's nodelist (cmap): nodeid → node name. Updates from nodes
    /// not in it are dropped, as in C.
    pub nodes: BTreeMap<u32, String>,
    /// `nodeip` values by node name (with their NUL).
    pub nodeip: BTreeMap<String, Vec<u8>>,
    /// Our address as resolved at start, announced when synced.
    pub own_ip: String,
    /// Members of the kvstore group (`online` in `.members`).
    pub online: BTreeSet<u32>,
    /// From cmap and the quorum service, for `.members`.
    pub cluster_name: String,
    pub config_version: u32,
    pub quorate: bool,
    /// The last GET_RRD_DUMP text and when it was made.
    pub rrd_dump_cache: Option<(u32, Vec<u8>)>,
    /// RRD samples stored since the edge last took them: every update,
    /// local or remote, also goes to the RRD files (spec §3.8).
    pub rrd_samples: Vec<(String, Vec<u8>)>,
}

fn ends_in_nul(v: &[u8]) -> bool {
    v.last() == Some(&0)
}

impl Kvstore {
    pub fn new(status: Status, own_ip: &str) -> Kvstore {
        Kvstore {
            rrd_pruned_at: 0,
            status,
            nodes: BTreeMap::new(),
            nodeip: BTreeMap::new(),
            own_ip: own_ip.to_string(),
            online: BTreeSet::new(),
            cluster_name: String::new(),
            config_version: 0,
            quorate: false,
            rrd_dump_cache: None,
            rrd_samples: Vec::new(),
        }
    }

    /// `.members` and GET_CLUSTER_INFO: the nodelist with online flags and
    /// addresses once corosync's nodelist is known, else the local form.
    pub fn members_json(&self) -> String {
        let mut status = self.status.clone();
        if !self.nodes.is_empty() {
            let nodes = self
                .nodes
                .iter()
                .map(|(id, name)| {
                    let ip = self.nodeip.get(name).map(|v| {
                        String::from_utf8_lossy(pmxcfs_wire::codec::c_str(v)).into_owned()
                    });
                    (name.clone(), (*id, self.online.contains(id), ip))
                })
                .collect();
            status.cluster = Some(super::status::ClusterInfo {
                name: self.cluster_name.clone(),
                config_version: self.config_version,
                quorate: self.quorate,
                nodes,
            });
        }
        status.members_json()
    }

    /// Store a key of node `node` by its class (spec §3.3); false when the
    /// value is refused (C then answers ENOMEM locally).
    fn store(&mut self, node: &str, key: &str, value: &[u8], now: u32) -> bool {
        if let Some(rrdkey) = key.strip_prefix("rrd/") {
            if value.is_empty() || value.len() >= MAX_RRD_LEN || !ends_in_nul(value) {
                return false;
            }
            let rrd = &mut self.status.rrd;
            if !rrd.contains_key(rrdkey) {
                // A new key: the entries no dump shows any more go first
                // (a pass over all of them at most once a second).
                if rrd.len() >= MAX_RRD_KEYS / 2 && now != self.rrd_pruned_at {
                    self.rrd_pruned_at = now;
                    rrd.retain(|_, (_, t)| now.saturating_sub(*t) <= RRD_KEEP_SECS);
                }
                if rrd.len() >= MAX_RRD_KEYS {
                    return false;
                }
            }
            rrd.insert(rrdkey.to_string(), (value.to_vec(), now));
            self.rrd_samples.push((rrdkey.to_string(), value.to_vec()));
            return true;
        }
        if key == "nodeip" {
            if value.is_empty() || value.len() >= MAX_NODEIP_LEN || !ends_in_nul(value) {
                return false;
            }
            if self.nodeip.get(node).map(Vec::as_slice) != Some(value) {
                self.nodeip.insert(node.to_string(), value.to_vec());
                self.status.clinfo_version = self.status.clinfo_version.wrapping_add(1);
            }
            return true;
        }
        // A peer's value is held to the limit a local one is (C takes any).
        if value.len() > MAX_STATUS_SIZE {
            return false;
        }
        let kv = self.status.kvstore.entry(node.to_string()).or_default();
        if !value.is_empty() && !kv.contains_key(key) && kv.len() >= MAX_KEYS_PER_NODE {
            return false;
        }
        if value.is_empty() {
            kv.remove(key);
        } else {
            match kv.get_mut(key) {
                Some(e) => {
                    e.data = value.to_vec();
                    e.version = e.version.wrapping_add(1);
                }
                None => {
                    kv.insert(
                        key.to_string(),
                        KvEntry {
                            data: value.to_vec(),
                            version: 0,
                        },
                    );
                }
            }
        }
        true
    }

    /// SET_STATUS (spec §3.3): store our own key and always broadcast it.
    pub fn set_local(&mut self, env: &mut Env, key: &[u8], value: &[u8]) -> Result<(), Errno> {
        if value.len() > MAX_STATUS_SIZE {
            return Err(EFBIG);
        }
        let name = self.status.nodename.clone();
        let stored = self.store(&name, &String::from_utf8_lossy(key), value, env.now);
        env.send_normal(Subtype::Update.into(), KvUpdate::new(key, value).to_bytes());
        if stored {
            Ok(())
        } else {
            Err(ENOMEM)
        }
    }

    /// LOG_CLUSTER_MSG: pack with our node name, insert, broadcast. A
    /// priority C cannot pack is accepted and ignored, as in C.
    pub fn log_local(
        &mut self,
        env: &mut Env,
        ident: &[u8],
        tag: &[u8],
        pid: u32,
        priority: u8,
        msg: &[u8],
    ) {
        let node = self.status.nodename.clone();
        let record = LogRecord {
            node: node.as_bytes(),
            ident,
            tag,
            pid,
            time: env.now,
            priority,
            msg,
        };
        if let Some(entry) = self.status.clog.pack(&record) {
            self.status.clog.insert(&entry);
            env.send_normal(Subtype::Log.into(), entry.to_bytes());
        }
    }
}

impl App for Kvstore {
    fn protocol_version(&self) -> u32 {
        PROTOCOL_VERSION
    }

    fn deliver(
        &mut self,
        env: &mut Env,
        from: Member,
        subtype: u16,
        _time: u32,
        payload: &[u8],
    ) -> Delivery {
        if from == env.me {
            // Stored when it was sent.
            return Delivery::Done(0);
        }
        match Subtype::from(subtype) {
            Subtype::Update => match KvUpdate::decode(payload) {
                Ok(u) => {
                    if let Some(name) = self.nodes.get(&from.nodeid).cloned() {
                        let key = String::from_utf8_lossy(u.key()).into_owned();
                        self.store(&name, &key, &u.value, env.now);
                    }
                }
                Err(e) => env.log_at(Level::Crit, format!("cant parse update message: {e}")),
            },
            Subtype::Log => match ClogEntry::decode(payload) {
                Ok(entry) => {
                    if !self.status.clog.insert(&entry) {
                        env.log_at(
                            Level::Debug,
                            "ignore insert of duplicate cluster log".into(),
                        );
                    }
                }
                Err(e) => env.log_at(Level::Crit, format!("cant parse log message: {e}")),
            },
            _ => {
                env.log(format!("unknown message type {subtype}"));
                return Delivery::Done(-EACCES);
            }
        }
        Delivery::Done(0)
    }

    fn get_state(&mut self, _env: &mut Env) -> Option<Vec<u8>> {
        Some(self.status.clog.state())
    }

    fn process_state_update(&mut self, env: &mut Env, states: &[MemberState]) -> Option<Vec<bool>> {
        let logs: Vec<Option<ClogBuffer>> = states
            .iter()
            .map(|s| {
                if s.member == env.me {
                    return Some(self.status.clog.ring().clone());
                }
                let ok = s.state.len() > 8
                    && u32::from_le_bytes(s.state[..4].try_into().ok()?) as usize == s.state.len();
                if !ok {
                    env.log_at(Level::Crit, "received log with wrong size".into());
                    return None;
                }
                ClogBuffer::decode(&s.state).ok()
            })
            .collect();
        self.status.clog.merge(&logs);
        // Re-broadcast our generic keys (not rrd, not nodeip).
        let own: Vec<(String, Vec<u8>)> = self
            .status
            .kvstore
            .get(&self.status.nodename)
            .map(|kv| {
                kv.iter()
                    .map(|(k, v)| (k.clone(), v.data.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (key, value) in own {
            env.send_normal(
                Subtype::Update.into(),
                KvUpdate::new(key.as_bytes(), &value).to_bytes(),
            );
        }
        Some(vec![true; states.len()])
    }

    fn process_update(&mut self, env: &mut Env, _from: Member, _payload: &[u8]) -> bool {
        env.log("kvstore received an UPDATE, which it never uses".into());
        false
    }

    fn commit(&mut self, _env: &mut Env) -> bool {
        true
    }

    fn cleanup(&mut self) {}

    /// Entering SYNCED: announce our address (the known one, else the one
    /// resolved at start), NUL included.
    fn synced(&mut self, env: &mut Env) {
        let name = self.status.nodename.clone();
        let value = self.nodeip.get(&name).cloned().unwrap_or_else(|| {
            let mut v = self.own_ip.as_bytes().to_vec();
            v.push(0);
            v
        });
        let _ = self.set_local(env, b"nodeip", &value);
    }

    fn confchg(&mut self, _env: &mut Env, members: &[Member]) {
        self.online = members.iter().map(|m| m.nodeid).collect();
        self.status.clinfo_version = self.status.clinfo_version.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Kvstore {
        Kvstore::new(Status::new("n1", 1000), "10.0.0.1")
    }

    #[test]
    fn what_peers_send_is_bounded() {
        let mut kv = store();
        // RRD entries: old ones go once there are many; never more than
        // the bound.
        for i in 0..MAX_RRD_KEYS / 2 {
            assert!(kv.store("n2", &format!("rrd/pve2-vm/{i}"), b"1:2\0", 1000));
        }
        assert!(kv.store("n2", "rrd/pve2-vm/new", b"1:2\0", 1000 + RRD_KEEP_SECS + 1));
        assert_eq!(kv.status.rrd.len(), 1, "the stale entries were dropped");
        for i in 0..MAX_RRD_KEYS {
            kv.store("n2", &format!("rrd/pve2-vm/x{i}"), b"1:2\0", 5000);
        }
        assert_eq!(kv.status.rrd.len(), MAX_RRD_KEYS);
        assert!(!kv.store("n2", "rrd/pve2-vm/one-more", b"1:2\0", 5000));
        assert!(
            kv.store("n2", "rrd/pve2-vm/x1", b"3:4\0", 5000),
            "an update still works"
        );
        // Generic keys: the size a local value may have, and a count.
        assert!(!kv.store("n2", "big", &vec![1; MAX_STATUS_SIZE + 1], 1000));
        assert!(kv.store("n2", "fits", &vec![1; MAX_STATUS_SIZE], 1000));
        for i in 1..MAX_KEYS_PER_NODE {
            assert!(kv.store("n2", &format!("k{i}"), b"v", 1000));
        }
        assert!(!kv.store("n2", "too-many", b"v", 1000));
        assert!(kv.store("n2", "k1", b"changed", 1000));
        assert!(kv.store("n2", "k1", b"", 1000), "a removal");
        assert!(kv.store("n2", "now-fits", b"v", 1000));
    }
}
