//! The node: everything one pmxcfs process decides, as one sans-IO state
//! machine (the quinn-proto / raft-rs shape). The daemon's corosync driver,
//! the in-process simulator (`crate::sim`) and capture replay
//! (`pmxcfs-replay check` and `shadow`) all drive this one type.
//!
//! Inputs come with the time they happen at: a CPG configuration change
//! or delivery, a quorum or cmap change, a local request (a FUSE operation,
//! an IPC call), a timer. The node owns both dfsm machines (dcdb and
//! kvstore), the quorum state, the boot rules, write admission (quorum,
//! lock release, the `.debug` switch) and the timers (hourly verify,
//! rejoining a group it had to leave, probing a database that failed).
//!
//! Its output is one ordered batch per input, taken with [`Node::drain`]:
//! first the changes to persist, which `drain` hands to the caller's
//! persist function before anything else leaves the node; then messages to
//! send, replies to give and effects (log lines, corosync.conf, RRD
//! samples, leaving or joining a group). A reply is therefore never given
//! before the change it reports is on disk; when persisting fails, the
//! replies of that batch become EIO.

use std::collections::{BTreeMap, VecDeque};

use pmxcfs_wire::clog::LogRecord;
use pmxcfs_wire::dcdb::{Subtype, UnlockMessage};
use pmxcfs_wire::dfsm::{Framing, MessageType, Sequence};
use pmxcfs_wire::Codec;

use super::dcdb::{self, Dcdb};
use super::dfsm::{Dfsm, Env, Member, Mode, Output};
use super::errno::{Errno, EACCES, EBUSY, EIO};
pub use super::io::*;
use super::ipc::{self, Client};
use super::kvstore::Kvstore;
use super::logline::{Level, LogLine, Subsystem};
use super::memdb::{DbChange, LoadError, Memdb, Row};
use super::status::Status;

/// The dcdb verify timer (C `DCDB_VERIFY_TIME`).
pub const VERIFY_PERIOD: u32 = 3600;
/// C restarts a service no sooner than 5 s after its last start.
const SERVICE_RESTART_US: u64 = 5_000_000;
/// How often a database that failed is tried again.
const STORAGE_PROBE_US: u64 = 5_000_000;

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

pub struct Node {
    dcdb: Dfsm<Dcdb>,
    kvstore: Dfsm<Kvstore>,
    config: NodeConfig,
    cluster_mode: bool,
    persist: Vec<DbChange>,
    sends: VecDeque<(Group, Vec<u8>)>,
    replies: VecDeque<(RequestId, Reply)>,
    effects: VecDeque<Effect>,
    /// Our dcdb messages waiting for their own delivery: count → request.
    waiters: BTreeMap<u64, RequestId>,
    joined: [bool; 2],
    last_join: [Option<Time>; 2],
    rejoin_at: [Option<Time>; 2],
    /// Set after a failed persist in cluster mode: when to probe next.
    storage_probe_at: Option<Time>,
    verify_last: u32,
    synced_once: bool,
}

fn result_of(r: i32) -> Result<u32, Errno> {
    if r < 0 {
        Err(-r)
    } else {
        Ok(r as u32)
    }
}

/// A one-line account of a dfsm message for debug lines.
pub fn describe_message(bytes: &[u8]) -> String {
    match Framing::parse(bytes) {
        Ok((payload, f)) => {
            let seq = match f.sequence {
                Sequence::Count(c) => format!("count {c}"),
                Sequence::Epoch(e) => format!("epoch {}/{}/{:08X}", e.nodeid, e.pid, e.epoch),
            };
            let subtype = if f.header.msg_type == MessageType::Normal {
                format!(" subtype {}", f.header.subtype)
            } else {
                String::new()
            };
            format!(
                "{:?}{subtype}, {seq}, time {}, {} bytes of payload",
                f.header.msg_type,
                f.header.time,
                payload.len()
            )
        }
        Err(_) => format!("undecodable message of {} bytes", bytes.len()),
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
            last_join: [None; 2],
            rejoin_at: [None; 2],
            storage_probe_at: None,
            verify_last: start,
            synced_once: false,
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

    pub fn is_cluster(&self) -> bool {
        self.cluster_mode
    }

    pub fn memdb(&self) -> &Memdb {
        &self.dcdb.app.memdb
    }

    pub fn kv(&self) -> &Kvstore {
        &self.kvstore.app
    }

    pub fn status(&self) -> &Status {
        &self.kvstore.app.status
    }

    pub fn nodename(&self) -> &str {
        &self.config.nodename
    }

    /// Local mode counts as quorate; in cluster mode, what corosync says.
    pub fn quorate(&self) -> bool {
        self.dcdb.app.quorate
    }

    pub fn debug(&self) -> bool {
        self.kvstore.app.status.debug
    }

    pub fn dcdb_mode(&self) -> Mode {
        self.dcdb.mode()
    }

    pub fn kvstore_mode(&self) -> Mode {
        self.kvstore.mode()
    }

    pub fn me(&self) -> Member {
        self.dcdb.me()
    }

    /// The members of the group's current view.
    pub fn members(&self, group: Group) -> Vec<Member> {
        match group {
            Group::Dcdb => self.dcdb.members(),
            Group::Kvstore => self.kvstore.members(),
        }
    }

    /// Whether the database failed and the node waits for it to recover.
    pub fn storage_failed(&self) -> bool {
        self.storage_probe_at.is_some() || self.memdb().has_error()
    }

    fn corosync_conf(&self) -> Option<Vec<u8>> {
        self.memdb()
            .lookup(b"corosync.conf")
            .filter(|e| !e.is_dir())
            .map(|e| e.data().to_vec())
    }

    #[track_caller]
    fn log(&mut self, subsystem: Subsystem, level: Level, text: impl Into<String>) {
        if level == Level::Debug && !self.debug() {
            return;
        }
        self.effects
            .push_back(Effect::Log(LogLine::new(subsystem, level, text)));
    }

    fn machine_mode(&self, group: Group) -> Mode {
        match group {
            Group::Dcdb => self.dcdb.mode(),
            Group::Kvstore => self.kvstore.mode(),
        }
    }

    /// Feed one input and persist what it changed: the batch that may now
    /// leave the node (performed by [`super::engine::run`]). When the
    /// persist fails, the batch's replies say so (see [`Node::drain`]).
    pub fn step(&mut self, now: Time, input: Input, storage: &mut dyn Storage) -> Batch {
        self.handle(now, input);
        let mut rows = 0;
        let actions = self.drain(now, &mut |changes| {
            rows += changes.iter().map(|c| c.write_rows.len()).sum::<usize>();
            storage.persist(changes)
        });
        Batch { actions, rows }
    }

    /// Feed one input.
    fn handle(&mut self, now: Time, input: Input) {
        let secs = now.secs();
        match input {
            Input::Joined { group, me } => {
                self.joined[group.index()] = true;
                self.last_join[group.index()] = Some(now);
                self.rejoin_at[group.index()] = None;
                match group {
                    Group::Dcdb => {
                        self.dcdb.set_me(me);
                        self.dcdb.initialize();
                        // C's dfsm_initialize wakes the waiting writers.
                        self.abort_waiters();
                    }
                    Group::Kvstore => {
                        self.kvstore.set_me(me);
                        self.kvstore.initialize();
                    }
                }
            }
            Input::Confchg {
                group,
                members,
                joined_any,
            } => {
                match group {
                    Group::Dcdb => self.dcdb.confchg(&members, joined_any, secs),
                    Group::Kvstore => self.kvstore.confchg(&members, joined_any, secs),
                }
                if !members.contains(&self.me()) && self.machine_mode(group) == Mode::Leave {
                    self.schedule_rejoin(group, now);
                }
            }
            Input::Deliver { group, from, msg } => {
                if self.debug() {
                    let what = describe_message(&msg);
                    self.log(
                        group.subsystem(),
                        Level::Debug,
                        format!("deliver from {}/{}: {what}", from.nodeid, from.pid),
                    );
                }
                match group {
                    Group::Dcdb => self.dcdb.deliver(from, &msg, secs),
                    Group::Kvstore => self.kvstore.deliver(from, &msg, secs),
                }
            }
            Input::GroupLost { group } => {
                self.joined[group.index()] = false;
                match group {
                    Group::Dcdb => {
                        self.dcdb.initialize();
                        self.abort_waiters();
                    }
                    Group::Kvstore => self.kvstore.initialize(),
                }
            }
            Input::Quorum { quorate } => {
                if quorate != self.quorate() {
                    let text = if quorate {
                        "node has quorum"
                    } else {
                        "node lost quorum"
                    };
                    self.log(Subsystem::Status, Level::Notice, text);
                }
                self.dcdb.app.quorate = quorate;
                self.kvstore.app.quorate = quorate;
            }
            Input::ClusterInfo(info) => {
                self.log(
                    Subsystem::Status,
                    Level::Notice,
                    format!(
                        "update cluster info (cluster name  {}, version = {})",
                        info.name, info.config_version
                    ),
                );
                let kv = &mut self.kvstore.app;
                kv.cluster_name = info.name;
                kv.config_version = info.config_version as u32;
                kv.nodes = info.nodes;
                kv.status.clinfo_version = kv.status.clinfo_version.wrapping_add(1);
            }
            Input::Request { id, request } => self.request(now, id, request),
            Input::SendFailed { group, bytes } => match super::dfsm::normal_count(&bytes) {
                // A request's message: its writer hears EBUSY (C's
                // result of a failed dfsm_send_message_sync).
                Some(count) => {
                    if group == Group::Dcdb {
                        if let Some(id) = self.waiters.remove(&count) {
                            self.replies.push_back((id, Reply::Fs(Err(EBUSY))));
                        }
                    }
                }
                // A state-machine message (SYNC_START, STATE, UPDATE,
                // VERIFY...) that did not go out leaves the peers waiting
                // for it: leave, and rejoin for a full resync (C: a failed
                // send in the sync protocol sets LEAVE).
                None => {
                    let why = format!("cannot send {}", describe_message(&bytes));
                    match group {
                        Group::Dcdb => self.dcdb.leave_group(secs, &why),
                        Group::Kvstore => self.kvstore.leave_group(secs, &why),
                    }
                }
            },
            Input::StorageRecovered { rows } => self.storage_recovered(now, rows),
            Input::Timers => self.handle_timeout(now),
            Input::Start => {
                if self.cluster_mode {
                    for group in Group::ALL {
                        self.effects.push_back(Effect::JoinGroup(group));
                    }
                }
            }
        }
        self.collect(now);
    }

    /// The dcdb writers waiting for their own delivery get EBUSY (C's
    /// preset result when the wait is aborted).
    fn abort_waiters(&mut self) {
        for (_, id) in std::mem::take(&mut self.waiters) {
            self.replies.push_back((id, Reply::Fs(Err(EBUSY))));
        }
    }

    fn schedule_rejoin(&mut self, group: Group, now: Time) {
        let earliest = self.last_join[group.index()]
            .map_or(now, |t| t.plus_micros(SERVICE_RESTART_US))
            .max(now);
        self.rejoin_at[group.index()] = Some(earliest);
    }

    fn request(&mut self, now: Time, id: RequestId, request: Request) {
        if self.debug() {
            let what = request.describe();
            self.log(
                Subsystem::Main,
                Level::Debug,
                format!("request {id}: {what}"),
            );
        }
        match request {
            Request::Ipc { client, bytes } => {
                let reply = self.ipc(now, client, &bytes);
                self.replies.push_back((id, Reply::Ipc(reply)));
            }
            Request::WriteDebug { offset, data } => {
                let result = self.write_debug(offset, &data);
                self.replies.push_back((id, Reply::Fs(result)));
            }
            fs => {
                let result = if self.storage_failed() {
                    Some(Err(EIO))
                } else if self.cluster_mode {
                    self.send_fs(now, id, fs)
                } else {
                    Some(self.apply_local(now, fs))
                };
                if let Some(result) = result {
                    self.replies.push_back((id, Reply::Fs(result)));
                }
            }
        }
    }

    /// `.debug`: `1\n` or `0\n` at offset 0 switch debug logging; anything
    /// else is EIO (C's special-file write rule).
    fn write_debug(&mut self, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        if offset != 0 || !(data.starts_with(b"0\n") || data.starts_with(b"1\n")) {
            return Err(EIO);
        }
        let on = data[0] == b'1';
        if on != self.debug() {
            if on {
                self.kvstore.app.status.debug = true;
                self.effects.push_back(Effect::Debug(true));
                self.log(Subsystem::Main, Level::Notice, "enable debug mode");
            } else {
                self.log(Subsystem::Main, Level::Notice, "disable debug mode");
                self.kvstore.app.status.debug = false;
                self.effects.push_back(Effect::Debug(false));
            }
        }
        Ok(2)
    }

    /// Local mode: apply at once, writer 0, stamped now (utimens uses the
    /// given mtime), as C's `-l`.
    fn apply_local(&mut self, now: Time, request: Request) -> Result<u32, Errno> {
        const WRITER: u32 = 0;
        let now = now.secs();
        let m = &mut self.dcdb.app.memdb;
        match request {
            Request::Mkdir { path } => m.mkdir(&path, WRITER, now, now).map(|_| 0),
            Request::Create { path } => m.create(&path, WRITER, now).map(|_| 0),
            Request::Write { path, offset, data } => {
                m.write(&path, WRITER, now, &data, offset, false)
            }
            Request::Truncate { path, size } => {
                m.write(&path, WRITER, now, &[], size, true).map(|_| 0)
            }
            Request::Delete { path } => m.delete(&path, WRITER, now).map(|_| 0),
            Request::Rename { from, to } => m.rename(&from, &to, WRITER, now).map(|_| 0),
            Request::SetMtime { path, mtime } => {
                if mtime == 0 && m.lock_checksum(&path).is_some() {
                    m.unlock_or_touch(&path, WRITER, now).map(|_| 0)
                } else {
                    m.set_mtime(&path, WRITER, mtime, now).map(|_| 0)
                }
            }
            Request::WriteDebug { .. } | Request::Ipc { .. } => Err(EIO),
        }
    }

    /// Cluster mode: multicast the operation; the reply comes with its own
    /// delivery (spec §2.6). `Some` is an immediate answer.
    fn send_fs(
        &mut self,
        now: Time,
        id: RequestId,
        request: Request,
    ) -> Option<Result<u32, Errno>> {
        if !self.quorate() {
            return Some(Err(EACCES));
        }
        if !self.joined[Group::Dcdb.index()] {
            return Some(Err(EBUSY));
        }
        // utime(0) on a lock directory: first ask the lowest node to
        // release it (without waiting), then the MTIME that fails while
        // the lock is fresh (spec §2.12).
        if let Request::SetMtime { path, mtime: 0 } = &request {
            if let Some(csum) = self.memdb().lock_checksum(path) {
                let unlock = UnlockMessage {
                    csum,
                    path: path.clone(),
                };
                self.dcdb.send_normal(
                    Subtype::UnlockRequest.into(),
                    &unlock.to_bytes(),
                    now.secs(),
                );
            }
        }
        let Some((subtype, message)) = super::requests::dcdb_message(request) else {
            return Some(Err(EIO));
        };
        match self
            .dcdb
            .send_normal(subtype.into(), &message.to_bytes(), now.secs())
        {
            Some(count) => {
                self.waiters.insert(count, id);
                None
            }
            None => Some(Err(EBUSY)),
        }
    }

    /// An IPC call. Broadcasts (SET_STATUS, LOG_CLUSTER_MSG) go out through
    /// the kvstore while we are in its group; otherwise only the local
    /// store changes, as when C's send fails.
    fn ipc(&mut self, now: Time, client: Client, bytes: &[u8]) -> Vec<u8> {
        let secs = now.secs();
        let broadcast = self.cluster_mode && self.joined[Group::Kvstore.index()];
        let Node { dcdb, kvstore, .. } = self;
        let memdb = &dcdb.app.memdb;
        if broadcast {
            kvstore.with_app(secs, |kv, env| ipc::handle(memdb, kv, env, client, bytes))
        } else {
            let mut env = Env::detached(secs);
            ipc::handle(memdb, &mut kvstore.app, &mut env, client, bytes)
        }
    }

    /// Answer an IPC request that only reads (every opcode but SET_STATUS
    /// and LOG_CLUSTER_MSG) at once, without the output batch; `None` for a
    /// request that must be fed as an input.
    pub fn query(&mut self, now: Time, client: Client, bytes: &[u8]) -> Option<Vec<u8>> {
        if !ipc::is_query(bytes) {
            return None;
        }
        let Node { dcdb, kvstore, .. } = self;
        let mut env = Env::detached(now.secs());
        Some(ipc::handle(
            &dcdb.app.memdb,
            &mut kvstore.app,
            &mut env,
            client,
            bytes,
        ))
    }

    fn storage_recovered(&mut self, now: Time, rows: Vec<Row>) {
        if self.storage_probe_at.is_none() {
            return;
        }
        match Memdb::from_rows(rows, now.secs()) {
            Ok((mut memdb, _)) => {
                if let Some(secs) = self.config.lock_timeout {
                    memdb.locks.set_timeout(secs);
                }
                self.dcdb.app.memdb = memdb;
                self.storage_probe_at = None;
                self.log(
                    Subsystem::Database,
                    Level::Notice,
                    "config.db takes writes again - reloaded it, rejoining the cluster to resync",
                );
                self.schedule_rejoin(Group::Dcdb, now);
            }
            Err(e) => self.log(
                Subsystem::Database,
                Level::Crit,
                format!("config.db takes writes again but does not load: {e}"),
            ),
        }
    }

    /// The next time `handle_timeout` has something to do.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut next: Option<Time> = None;
        let mut consider = |t: Option<Time>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if self.cluster_mode {
            consider(Some(Time::from_secs(
                self.verify_last.saturating_add(VERIFY_PERIOD),
            )));
        }
        if self.storage_probe_at.is_none() {
            for g in Group::ALL {
                consider(self.rejoin_at[g.index()]);
            }
        }
        consider(self.storage_probe_at);
        next
    }

    /// Run the timers that are due at `now` (`Input::Timers`).
    fn handle_timeout(&mut self, now: Time) {
        let secs = now.secs();
        if self.cluster_mode && secs.saturating_sub(self.verify_last) >= VERIFY_PERIOD {
            self.verify_last = secs;
            self.dcdb.verify_request(secs);
        }
        if self.storage_probe_at.is_none() {
            for g in Group::ALL {
                if self.rejoin_at[g.index()].is_some_and(|t| t <= now) {
                    self.rejoin_at[g.index()] = None;
                    self.last_join[g.index()] = Some(now);
                    self.effects.push_back(Effect::JoinGroup(g));
                }
            }
        }
        if self.storage_probe_at.is_some_and(|t| t <= now) {
            self.storage_probe_at = Some(now.plus_micros(STORAGE_PROBE_US));
            self.effects.push_back(Effect::ProbeStorage);
        }
    }

    /// Move what the machines produced into the output batch.
    fn collect(&mut self, now: Time) {
        for group in Group::ALL {
            let outputs = match group {
                Group::Dcdb => self.dcdb.take_outputs(),
                Group::Kvstore => self.kvstore.take_outputs(),
            };
            for out in outputs {
                match out {
                    Output::Send(bytes) => {
                        if self.debug() {
                            let what = describe_message(&bytes);
                            self.log(group.subsystem(), Level::Debug, format!("send {what}"));
                        }
                        self.sends.push_back((group, bytes));
                    }
                    Output::Delivered { count, result } => {
                        if group == Group::Dcdb {
                            if let Some(id) = self.waiters.remove(&count) {
                                self.replies.push_back((id, Reply::Fs(result_of(result))));
                            }
                        }
                    }
                    Output::ModeChanged(mode) => {
                        if mode.is_error() {
                            // C leaves the group when its dfsm is in an
                            // error mode, and comes back (LEAVE only) once
                            // the leave went through. Writers waiting for
                            // their delivery will not get it in this
                            // membership: they hear EBUSY now, whatever
                            // the error mode (ERROR and VERSION_ERROR
                            // never come back).
                            self.joined[group.index()] = false;
                            self.effects.push_back(Effect::LeaveGroup(group));
                            if group == Group::Dcdb {
                                self.abort_waiters();
                            }
                        }
                        if mode == Mode::Synced && group == Group::Dcdb && !self.synced_once {
                            self.synced_once = true;
                            self.effects.push_back(Effect::FirstSync);
                        }
                    }
                    Output::Log(level, text, location) => {
                        if level != Level::Debug || self.debug() {
                            self.effects.push_back(Effect::Log(LogLine {
                                subsystem: group.subsystem(),
                                level,
                                text,
                                location,
                            }));
                        }
                    }
                }
            }
        }
        self.persist.extend(self.dcdb.app.memdb.take_changes());
        for effect in self.dcdb.app.take_effects() {
            let dcdb::Effect::SyncCorosyncConf { reload } = effect;
            let conf = self.corosync_conf();
            self.effects
                .push_back(Effect::SyncCorosyncConf { conf, reload });
        }
        for (key, value) in std::mem::take(&mut self.kvstore.app.rrd_samples) {
            self.effects.push_back(Effect::Rrd {
                key,
                value,
                time: now.secs(),
            });
        }
    }

    /// The output batch of the inputs fed so far, in order: the changes to
    /// persist go to `persist` first; only then come the sends, replies and
    /// effects. When `persist` fails, the replies of the batch become EIO,
    /// and the node stops taking changes: in local mode until a restart,
    /// as C; in cluster mode it leaves the dcdb group, keeps serving
    /// reads, and probes the database until it takes writes again, then
    /// reloads it and rejoins as a follower (C stays in the group with a
    /// database that no longer matches its memory).
    fn drain(
        &mut self,
        now: Time,
        persist: &mut dyn FnMut(&[DbChange]) -> Result<(), PersistFailure>,
    ) -> Vec<Action> {
        if !self.persist.is_empty() {
            let changes = std::mem::take(&mut self.persist);
            if let Err(failure) = persist(&changes) {
                self.persist_failed(now, failure);
            }
        }
        let mut actions =
            Vec::with_capacity(self.sends.len() + self.replies.len() + self.effects.len());
        actions.extend(
            self.sends
                .drain(..)
                .map(|(group, bytes)| Action::Send { group, bytes }),
        );
        actions.extend(
            self.replies
                .drain(..)
                .map(|(id, reply)| Action::Reply { id, reply }),
        );
        actions.extend(self.effects.drain(..).map(Action::Effect));
        actions
    }

    fn persist_failed(&mut self, now: Time, failure: PersistFailure) {
        for line in &failure.lines {
            self.log(Subsystem::Database, Level::Crit, line.clone());
        }
        // What the callers were about to hear as success is not on disk.
        for (_, reply) in self.replies.iter_mut() {
            if matches!(reply, Reply::Fs(Ok(_))) {
                *reply = Reply::Fs(Err(EIO));
            }
        }
        if !self.cluster_mode {
            self.dcdb.app.memdb.set_error();
            return;
        }
        if self.storage_probe_at.is_none() {
            self.log(
                Subsystem::Dcdb,
                Level::Crit,
                "cannot write config.db - leaving the cluster group, serving reads only, until it takes writes again",
            );
            self.storage_probe_at = Some(now.plus_micros(STORAGE_PROBE_US));
        }
        // Nothing more goes out on behalf of a tree that is not on disk.
        self.sends.retain(|(g, _)| *g != Group::Dcdb);
        self.dcdb
            .leave_group(now.secs(), "config.db cannot be written");
        self.abort_waiters();
        self.collect(now);
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
