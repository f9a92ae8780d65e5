//! dcdb: the replicated configuration database (spec §2) as a dfsm
//! application. A NORMAL message is a file-system operation applied to
//! memdb with the sender as writer and the header time as mtime; the STATE
//! is the memdb index; the member with the newest index leads the sync and
//! sends the entries the others lack.

use std::collections::BTreeSet;

use pmxcfs_wire::dcdb::{
    FuseMessage, MemdbIndex, Subtype, TreeEntry, UnlockMessage, PROTOCOL_VERSION,
};
use pmxcfs_wire::dfsm::MessageType;
use pmxcfs_wire::Codec;

use super::dfsm::{member_list, App, Delivery, Env, Member, MemberState};
use super::errno::{Errno, EACCES, EINVAL};
use super::io::TreeChange;
use super::logline::Level;
use super::memdb::Memdb;

/// Something the dcdb wants its edges to do besides persisting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// `corosync.conf` in memdb may be newer than the host's: sync it, and
    /// reload corosync if allowed (we wrote it).
    SyncCorosyncConf { reload: bool },
    /// The tree changed without a request of this node's mount.
    TreeChanged(TreeChange),
}

struct SyncRound {
    leader: Member,
    leader_index: MemdbIndex,
    updates: Vec<TreeEntry>,
}

pub struct Dcdb {
    pub memdb: Memdb,
    /// Quorum as the quorum service reports it; writes need it.
    pub quorate: bool,
    round: Option<SyncRound>,
    effects: Vec<Effect>,
}

fn result_of(r: Result<u32, Errno>) -> i32 {
    match r {
        Ok(v) => v as i32,
        Err(e) => -e,
    }
}

impl Dcdb {
    pub fn new(memdb: Memdb) -> Dcdb {
        Dcdb {
            memdb,
            quorate: false,
            round: None,
            effects: Vec::new(),
        }
    }

    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Apply one file-system operation (spec §2.5).
    fn apply(
        &mut self,
        env: &mut Env,
        from: Member,
        subtype: Subtype,
        time: u32,
        m: &FuseMessage,
    ) -> i32 {
        let writer = from.nodeid;
        let Some(path) = m.path.as_deref() else {
            return -EINVAL;
        };
        let path = pmxcfs_wire::codec::c_str(path);
        // A peer's change passes the rules a local one passes at the mount
        // before it touches the tree (the tree's own rules are memdb's).
        let to = m.to.as_deref().map(pmxcfs_wire::codec::c_str);
        let refused = [Some(path), to]
            .into_iter()
            .flatten()
            .find(|p| !super::fs::peer_path_allowed(p));
        if let Some(p) = refused {
            env.log_at(
                Level::Crit,
                format!(
                    "refused {subtype:?} from {}/{}: '{}' names an entry no change may touch",
                    from.nodeid,
                    from.pid,
                    String::from_utf8_lossy(p)
                ),
            );
            return -EACCES;
        }
        let conf = |p: &[u8]| p == b"corosync.conf";
        let result = match subtype {
            Subtype::Write => self
                .memdb
                .write(path, writer, time, &m.data, m.offset, m.flags != 0),
            Subtype::Create => self.memdb.create(path, writer, time).map(|_| 0),
            Subtype::Mkdir => self.memdb.mkdir(path, writer, time, env.now).map(|_| 0),
            Subtype::Delete => self.memdb.delete(path, writer, time).map(|_| 0),
            Subtype::Mtime => self
                .memdb
                .set_mtime(path, writer, m.offset, env.now)
                .map(|_| 0),
            Subtype::Rename => match m.to.as_deref() {
                Some(to) => {
                    let to = pmxcfs_wire::codec::c_str(to);
                    let r = self.memdb.rename(path, to, writer, time).map(|_| 0);
                    if r.is_ok() && conf(to) {
                        self.effects.push(Effect::SyncCorosyncConf {
                            reload: from == env.me,
                        });
                    }
                    r
                }
                None => Err(EINVAL),
            },
            _ => Err(EINVAL),
        };
        if result.is_ok() && matches!(subtype, Subtype::Write | Subtype::Create) && conf(path) {
            self.effects.push(Effect::SyncCorosyncConf {
                reload: from == env.me,
            });
        }
        // This node's own changes were asked for by its kernel, which
        // keeps its caches right itself (and would look every name up
        // again if told otherwise).
        if result.is_ok() && from != env.me {
            let paths = [Some(path), to].into_iter().flatten().map(<[u8]>::to_vec);
            self.effects
                .push(Effect::TreeChanged(TreeChange::Paths(paths.collect())));
        }
        result_of(result)
    }

    /// UNLOCK_REQUEST and UNLOCK (spec §2.5, §2.12): only for an existing
    /// lock directory whose checksum still matches.
    fn unlock(
        &mut self,
        env: &mut Env,
        from: Member,
        subtype: Subtype,
        time: u32,
        m: &UnlockMessage,
        raw: &[u8],
    ) -> i32 {
        let path = pmxcfs_wire::codec::c_str(&m.path).to_vec();
        if self.memdb.lock_checksum(&path) != Some(m.csum) {
            return 0;
        }
        match subtype {
            Subtype::UnlockRequest => {
                if env.is_lowest() && self.memdb.locks.expired(&path, &m.csum, env.now) {
                    env.send_normal(Subtype::Unlock.into(), raw.to_vec());
                }
                0
            }
            _ => {
                let result = self.memdb.delete(&path, from.nodeid, time).map(|_| 0);
                if result.is_ok() {
                    self.effects
                        .push(Effect::TreeChanged(TreeChange::Paths(vec![path])));
                }
                result_of(result)
            }
        }
    }

    /// The entries the leader sends: for every other member, each leader
    /// entry it lacks or has differently (spec §2.8 step 4).
    fn differing_inodes(leader: &MemdbIndex, others: &[MemdbIndex]) -> BTreeSet<u64> {
        let mut marked = BTreeSet::new();
        for other in others {
            let mut j = 0;
            for l in &leader.entries {
                while j < other.entries.len() && other.entries[j].inode < l.inode {
                    j += 1;
                }
                // An exhausted list counts as different (C reads past it).
                if other.entries.get(j) != Some(l) {
                    marked.insert(l.inode);
                }
            }
        }
        marked
    }
}

fn parse_index(state: &[u8]) -> Option<MemdbIndex> {
    MemdbIndex::decode(state).ok()
}

impl App for Dcdb {
    fn protocol_version(&self) -> u32 {
        PROTOCOL_VERSION
    }

    fn deliver(
        &mut self,
        env: &mut Env,
        from: Member,
        subtype: u16,
        time: u32,
        payload: &[u8],
    ) -> Delivery {
        if !self.quorate {
            env.log_at(
                Level::Crit,
                "received write while not quorate - trigger resync".into(),
            );
            return Delivery::Leave(-1);
        }
        let subtype = Subtype::from(subtype);
        let result = if subtype.carries_fuse_message() {
            let Ok(m) = FuseMessage::decode(payload) else {
                return Delivery::Leave(-1);
            };
            self.apply(env, from, subtype, time, &m)
        } else if matches!(subtype, Subtype::UnlockRequest | Subtype::Unlock) {
            let Ok(m) = UnlockMessage::decode(payload) else {
                return Delivery::Leave(-1);
            };
            self.unlock(env, from, subtype, time, &m, payload)
        } else {
            env.log(format!(
                "unknown dcdb message subtype {}",
                u16::from(subtype)
            ));
            return Delivery::Leave(-1);
        };
        if self.memdb.has_error() {
            return Delivery::Error(result);
        }
        Delivery::Done(result)
    }

    fn get_state(&mut self, _env: &mut Env) -> Option<Vec<u8>> {
        Some(self.memdb.index().to_bytes())
    }

    fn process_state_update(&mut self, env: &mut Env, states: &[MemberState]) -> Option<Vec<bool>> {
        let indexes: Vec<MemdbIndex> = states
            .iter()
            .map(|s| parse_index(&s.state))
            .collect::<Option<_>>()?;
        let mut leader = 0;
        for (i, idx) in indexes.iter().enumerate().skip(1) {
            let l = &indexes[leader];
            if idx.version > l.version || (idx.version == l.version && idx.mtime > l.mtime) {
                leader = i;
            }
        }
        let lm = states[leader].member;
        env.log(format!("leader is {}/{}", lm.nodeid, lm.pid));
        let synced: Vec<bool> = states
            .iter()
            .enumerate()
            .map(|(i, s)| i == leader || s.state == states[leader].state)
            .collect();
        env.log(format!(
            "synced members: {}",
            member_list(
                states
                    .iter()
                    .zip(&synced)
                    .filter(|(_, s)| **s)
                    .map(|(m, _)| &m.member)
            )
        ));
        if lm == env.me {
            let others: Vec<MemdbIndex> = indexes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != leader)
                .map(|(_, x)| x.clone())
                .collect();
            // C sends these in hash-table order; ascending inode order here.
            env.log("start sending inode updates".into());
            let mut sent = 0;
            for inode in Self::differing_inodes(&indexes[leader], &others) {
                if let Some(e) = self.memdb.entry(inode) {
                    // Framed in place: the whole tree may go out here.
                    let entry = e.to_tree_entry();
                    let len = TreeEntry::FIXED_LEN + entry.name.len() + 1 + entry.data.len();
                    env.send_state_with(MessageType::Update, len, |out| entry.encode(out));
                    sent += 1;
                }
            }
            env.log(format!("sent all ({sent}) updates"));
            env.send_state(MessageType::UpdateComplete, Vec::new());
        }
        self.round = Some(SyncRound {
            leader: lm,
            leader_index: indexes[leader].clone(),
            updates: Vec::new(),
        });
        Some(synced)
    }

    fn process_update(&mut self, _env: &mut Env, from: Member, payload: &[u8]) -> bool {
        let Ok(entry) = TreeEntry::decode(payload) else {
            return false;
        };
        match &mut self.round {
            Some(round) if round.leader == from => {
                round.updates.push(entry);
                true
            }
            _ => false,
        }
    }

    fn commit(&mut self, env: &mut Env) -> bool {
        let Some(round) = self.round.take() else {
            return false;
        };
        env.log(format!(
            "update complete - trying to commit (got {} inode updates)",
            round.updates.len()
        ));
        match self
            .memdb
            .commit_sync(&round.leader_index, round.updates, env.now)
        {
            Ok(()) => {
                self.effects
                    .push(Effect::SyncCorosyncConf { reload: false });
                self.effects.push(Effect::TreeChanged(TreeChange::All));
                true
            }
            Err(e) => {
                env.log_at(Level::Crit, e);
                false
            }
        }
    }

    fn cleanup(&mut self) {
        self.round = None;
    }

    fn has_checksum(&self) -> bool {
        true
    }

    fn checksum(&mut self) -> Option<[u8; 32]> {
        Some(self.memdb.checksum())
    }
}
