//! `pmxcfs-replay check`: run our core with a recorded node's identity and
//! inputs, and compare what it sends and the database it ends with against
//! what the C node sent and left.
//!
//! For each `nodeN.pcap` of a scenario folder, every process of that node
//! (a restart shows as a new `local_pid`) is replayed in order through the
//! node core the daemon runs (`pmxcfs::core::node::Node`), carrying the
//! database over, as the real node did — unless the process's first STATE
//! shows that it started on a new database (config.db deleted between two
//! runs), which the report says:
//! - CONFCHG, DELIVER and QUORUM records are fed to the core as they were;
//! - a recorded MCAST is compared with the next message the core decided to
//!   send in that group; when the core has nothing pending, the MCAST was
//!   caused by a local request (a FUSE operation, an IPC call), which is
//!   decoded from the recording and handed to the core as that request;
//! - at the end, the database rows are compared with
//!   `expected/nodeN.config.sql`.
//!
//! Taken from the recording, because offline they cannot be known:
//! - the time: the core's clock reads the timestamp of the record being
//!   processed; a message caused by a local request is handed to the core
//!   at the time in its own header (the recorder stamps the MCAST a moment
//!   after C read the clock); a process starts at its first record's
//!   second, or, with a fresh database, at the second its database was
//!   created, as the index mtime of its first STATE shows;
//! - the node's address (announced as `nodeip`): the real daemon resolves
//!   its host name; the replay takes the node's `ring0_addr` from the
//!   scenario's corosync.conf, where the recorded nodes got theirs;
//! - the text of a cluster-log message sent through IPC: only its sanitised
//!   form was recorded, so it is un-sanitised before the core packs it
//!   again (sanitising is idempotent on that round trip);
//! - uninitialised bytes of C's kvstore messages: the key field of an
//!   UPDATE after the key's NUL (C copies the key into a stack buffer) and
//!   the 4 tail bytes of a LOG entry; our daemon sends zeros there (C never
//!   reads them), and the comparison takes these bytes, and only these, from
//!   the recorded message;
//! - the order of the UPDATE messages within one sync: C sends them in the
//!   iteration order of a hash table keyed by memory addresses, so within
//!   one run of UPDATEs the recorded order decides which of ours is next.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use pmxcfs::core::dfsm::Member;
use pmxcfs::core::ipc::Client;
use pmxcfs::core::memdb::{DbChange, Memdb, Row};
use pmxcfs::core::node::{
    Action, ClusterInfo, Group as NodeGroup, Input, Node, NodeConfig, Request, Time,
};
use pmxcfs_wire::dcdb::{FuseMessage, Subtype};
use pmxcfs_wire::dfsm::{Framing, MessageType};
use pmxcfs_wire::ipc::{name_field, Request as IpcRequest, RequestBody};
use pmxcfs_wire::Codec;

use crate::capture::{read_capture, Event, EventBody, Record, CS_OK};
use crate::describe::{Decoded, Group};
use crate::sqldump::parse_dump;

/// The outcome for one node.
#[derive(Clone, Debug, Default)]
pub struct NodeReport {
    pub node: String,
    pub sends_matched: usize,
    pub sends_total: usize,
    pub final_state_matched: bool,
    pub problems: Vec<String>,
    /// What the replay inferred and the reader should know (e.g. a
    /// process that started on a new database).
    pub notes: Vec<String>,
}

impl NodeReport {
    pub fn ok(&self) -> bool {
        self.sends_matched == self.sends_total
            && self.final_state_matched
            && self.problems.is_empty()
    }
}

/// The config.db of a node as C would hold it: rows by inode.
#[derive(Default)]
struct RowStore {
    rows: BTreeMap<u64, Row>,
}

impl RowStore {
    fn apply(&mut self, changes: &[DbChange]) {
        for c in changes {
            c.clone().apply_to(&mut self.rows);
        }
    }
}

struct Replayer {
    label: String,
    dir: PathBuf,
    corosync_conf: Vec<u8>,
    /// nodeid → (name, ring0_addr) from corosync.conf.
    nodelist: BTreeMap<u32, (String, String)>,
    store: RowStore,
    report: NodeReport,
}

/// A short description of a message for problem reports.
fn describe(group: Group, bytes: &[u8]) -> String {
    match Decoded::decode(group, bytes) {
        Ok(d) => d.summary(),
        Err(e) => format!("undecodable ({e})"),
    }
}

fn is_update(bytes: &[u8]) -> bool {
    matches!(Framing::parse(bytes), Ok((_, f)) if f.header.msg_type == MessageType::Update)
}

fn node_group(g: Group) -> Option<NodeGroup> {
    match g {
        Group::Dcdb => Some(NodeGroup::Dcdb),
        Group::Kvstore => Some(NodeGroup::Kvstore),
        Group::Other => None,
    }
}

fn capture_group(g: NodeGroup) -> Group {
    match g {
        NodeGroup::Dcdb => Group::Dcdb,
        NodeGroup::Kvstore => Group::Kvstore,
    }
}

/// One process of the node, from its first record to its last.
struct Process {
    me: Member,
    node: Node,
    pending: HashMap<Group, VecDeque<Vec<u8>>>,
    next_id: u64,
}

/// The database a process starts on.
enum StartDb {
    /// What the previous process left (or nothing, for the first one).
    CarriedOver,
    /// A new one, as after config.db was deleted.
    Fresh,
}

impl Replayer {
    fn new(dir: &Path, label: &str) -> Replayer {
        Replayer {
            label: label.to_string(),
            dir: dir.to_path_buf(),
            corosync_conf: std::fs::read(dir.join("corosync.conf")).unwrap_or_default(),
            nodelist: BTreeMap::new(),
            store: RowStore::default(),
            report: NodeReport {
                node: label.to_string(),
                ..NodeReport::default()
            },
        }
    }

    fn problem(&mut self, s: String) {
        if self.report.problems.len() < 20 {
            self.report.problems.push(s);
        }
    }

    fn config(&self, me: Member) -> NodeConfig {
        let (name, ip) = self.nodelist.get(&me.nodeid).cloned().unwrap_or_default();
        NodeConfig {
            nodename: name,
            node_ip: ip,
            pid: me.pid,
            ..NodeConfig::default()
        }
    }

    /// The corosync.conf a new database of this node would import: the
    /// scenario's, or the newest one the node's tree held (the host's file
    /// follows /etc/pve).
    fn conf_candidates(&self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        if let Ok((m, _)) = Memdb::from_rows(self.store.rows.values().cloned().collect(), 0) {
            if let Some(e) = m.lookup(b"corosync.conf").filter(|e| !e.is_dir()) {
                v.push(e.data().to_vec());
            }
        }
        if !self.corosync_conf.is_empty() && !v.contains(&self.corosync_conf) {
            v.push(self.corosync_conf.clone());
        }
        v
    }

    /// Which database the process really started on, judged by the index
    /// of its first STATE: the one carried over, or a new one.
    fn start_db(&self, first_state: Option<&[u8]>, start: u32) -> (StartDb, Option<Vec<u8>>) {
        if self.store.rows.is_empty() {
            return (StartDb::Fresh, self.conf_candidates().into_iter().next());
        }
        let Some(state) = first_state else {
            return (StartDb::CarriedOver, None);
        };
        let carried = Memdb::from_rows(self.store.rows.values().cloned().collect(), start)
            .map(|(m, _)| m.index().to_bytes());
        if carried.as_deref().ok() == Some(state) {
            return (StartDb::CarriedOver, None);
        }
        for conf in self.conf_candidates() {
            let (mut m, _) = Memdb::new_empty(start);
            let _ = m.create(b"corosync.conf", 0, start);
            let _ = m.write(b"corosync.conf", 0, start, &conf, 0, true);
            if m.index().to_bytes() == state {
                return (StartDb::Fresh, Some(conf));
            }
        }
        (StartDb::CarriedOver, None)
    }

    /// Start a process the way the daemon boots, then join both groups.
    fn start_process(&mut self, me: Member, records: &[Record]) -> Option<Process> {
        let first_state = first_state(records, me);
        let start = match (&first_state, self.store.rows.is_empty()) {
            // A new database is stamped with the second it was created.
            (Some((_, index_mtime)), _) => *index_mtime,
            (None, _) => records.first().map_or(0, |r| r.ts_sec),
        };
        let (db, conf) = self.start_db(first_state.as_ref().map(|(s, _)| s.as_slice()), start);
        let start = match db {
            StartDb::Fresh => start,
            StartDb::CarriedOver => records.first().map_or(start, |r| r.ts_sec),
        };
        let rows = match db {
            StartDb::CarriedOver if !self.store.rows.is_empty() => {
                Some(self.store.rows.values().cloned().collect())
            }
            StartDb::CarriedOver => None,
            StartDb::Fresh => {
                if !self.store.rows.is_empty() {
                    self.report.notes.push(format!(
                        "process {} started on a new database (its first state is that of a fresh config.db)",
                        me.pid
                    ));
                }
                self.store.rows.clear();
                None
            }
        };
        let conf =
            conf.or_else(|| (!self.corosync_conf.is_empty()).then(|| self.corosync_conf.clone()));
        let mut node = match Node::boot(
            self.config(me),
            rows,
            conf.as_deref(),
            Time::from_secs(start),
        ) {
            Ok(n) => n,
            Err(e) => {
                self.problem(format!("database does not load at restart: {e}"));
                return None;
            }
        };
        let now = Time::from_secs(start);
        for group in NodeGroup::ALL {
            node.handle(now, Input::Joined { group, me });
        }
        let nodes = self
            .nodelist
            .iter()
            .map(|(id, (n, _))| (*id, n.clone()))
            .collect();
        node.handle(
            now,
            Input::ClusterInfo(ClusterInfo {
                name: String::new(),
                config_version: 0,
                nodes,
            }),
        );
        let mut p = Process {
            me,
            node,
            pending: HashMap::new(),
            next_id: 1,
        };
        self.drain(&mut p, now);
        Some(p)
    }

    /// Take the node's output: its changes into the row store, its sends
    /// into the queues the recorded MCASTs are compared with.
    fn drain(&mut self, p: &mut Process, now: Time) {
        let store = &mut self.store;
        let actions = p.node.drain(now, &mut |changes| {
            store.apply(changes);
            Ok(())
        });
        for action in actions {
            if let Action::Send { group, bytes } = action {
                p.pending
                    .entry(capture_group(group))
                    .or_default()
                    .push_back(bytes);
            }
        }
    }

    /// The timers, run before each input at that input's time.
    fn tick(&mut self, p: &mut Process, now: Time) {
        if p.node.poll_timeout().is_some_and(|t| t <= now) {
            p.node.handle_timeout(now);
            self.drain(p, now);
        }
    }

    fn input(&mut self, p: &mut Process, now: Time, input: Input) {
        p.node.handle(now, input);
        self.drain(p, now);
    }

    fn feed(&mut self, p: &mut Process, event: &Event, now: Time) {
        let group = Group::of(&event.group);
        match &event.body {
            EventBody::Quorum { quorate, .. } => {
                self.input(
                    p,
                    now,
                    Input::Quorum {
                        quorate: *quorate != 0,
                    },
                );
            }
            EventBody::Confchg {
                members, joined, ..
            } => {
                if let Some(g) = node_group(group) {
                    let members: Vec<Member> = members.iter().map(Member::from).collect();
                    self.input(
                        p,
                        now,
                        Input::Confchg {
                            group: g,
                            members,
                            joined_any: !joined.is_empty(),
                        },
                    );
                }
            }
            EventBody::Deliver {
                sender_nodeid,
                sender_pid,
                msg,
            } => {
                if let Some(g) = node_group(group) {
                    let from = Member {
                        nodeid: *sender_nodeid,
                        pid: *sender_pid,
                    };
                    self.input(
                        p,
                        now,
                        Input::Deliver {
                            group: g,
                            from,
                            msg: msg.clone(),
                        },
                    );
                }
            }
            EventBody::Mcast { result, msg, .. } if group != Group::Other => {
                if *result != CS_OK {
                    // A TRY_AGAIN attempt: the retry that follows carries
                    // the same bytes and is the one matched.
                    return;
                }
                self.report.sends_total += 1;
                if p.pending.entry(group).or_default().is_empty() {
                    self.local_request(p, group, msg);
                }
                let queue = p.pending.entry(group).or_default();
                if group == Group::Kvstore {
                    if let Some(front) = queue.front_mut() {
                        adopt_uninitialised(front, msg);
                    }
                }
                let pos = if is_update(msg) {
                    // Within a run of UPDATEs, the recording gives the order.
                    let run = queue.iter().take_while(|b| is_update(b)).count();
                    queue.iter().take(run).position(|b| b == msg)
                } else {
                    (queue.front() == Some(msg)).then_some(0)
                };
                match pos.and_then(|i| queue.remove(i)) {
                    Some(_) => self.report.sends_matched += 1,
                    None => {
                        let ours = queue.pop_front();
                        let recorded = describe(group, msg);
                        let s = match ours {
                            Some(o) => {
                                format!("sent {} where C sent {}", describe(group, &o), recorded)
                            }
                            None => format!("sent nothing where C sent {recorded}"),
                        };
                        self.problem(s);
                    }
                }
            }
            _ => {}
        }
    }

    /// A recorded NORMAL message the core did not decide to send itself
    /// came from a local request: a FUSE operation (dcdb) or an IPC call
    /// (kvstore). Hand the core that request, at the time in the
    /// message's header (when C read its clock for it).
    fn local_request(&mut self, p: &mut Process, group: Group, msg: &[u8]) {
        let Some(request) = request_of(group, msg) else {
            return;
        };
        let time = Framing::parse(msg).map_or(0, |(_, f)| f.header.time);
        let id = p.next_id;
        p.next_id += 1;
        self.input(p, Time::from_secs(time), Input::Request { id, request });
    }

    fn end_process(&mut self, p: &mut Process) {
        for (group, queue) in p.pending.drain() {
            for extra in queue {
                self.report.sends_total += 1;
                let s = format!("sent {} which C did not send", describe(group, &extra));
                self.problem(s);
            }
        }
    }

    /// Replay every process; the last one's node.
    fn run(&mut self, records: &[Record]) -> Option<Node> {
        let mut current: Option<Process> = None;
        for (i, record) in records.iter().enumerate() {
            let event = match record.event() {
                Ok(e) => e,
                Err(e) => {
                    self.problem(format!("record {i}: {e}"));
                    continue;
                }
            };
            let now = Time(record.ts_sec as u64 * 1_000_000 + record.ts_usec as u64);
            let me = Member {
                nodeid: event.local_nodeid,
                pid: event.local_pid,
            };
            if current.as_ref().is_none_or(|p| p.me != me) {
                if let Some(mut p) = current.take() {
                    self.end_process(&mut p);
                }
                current = self.start_process(me, &records[i..]);
            }
            let Some(mut p) = current.take() else {
                continue;
            };
            self.tick(&mut p, now);
            self.feed(&mut p, &event, now);
            current = Some(p);
        }
        let mut p = current.take()?;
        self.end_process(&mut p);
        Some(p.node)
    }

    fn compare_final_state(&mut self) {
        let expected = self
            .dir
            .join("expected")
            .join(format!("{}.config.sql", self.label));
        let text = match std::fs::read_to_string(&expected) {
            Ok(t) => t,
            Err(e) => {
                self.problem(format!("{}: {e}", expected.display()));
                return;
            }
        };
        let rows = match parse_dump(&text) {
            Ok(r) => r,
            Err(e) => {
                self.problem(format!("{}: {e}", expected.display()));
                return;
            }
        };
        let want: BTreeMap<u64, Row> = rows.into_iter().map(|r| (r.inode, r)).collect();
        if want == self.store.rows {
            self.report.final_state_matched = true;
            return;
        }
        let mut diffs = Vec::new();
        for (inode, w) in &want {
            match self.store.rows.get(inode) {
                Some(g) if g == w => {}
                Some(g) => diffs.push(format!("inode {inode}: ours {g:?}, C {w:?}")),
                None => diffs.push(format!(
                    "inode {inode} ({}) missing",
                    String::from_utf8_lossy(&w.name)
                )),
            }
        }
        for (inode, g) in &self.store.rows {
            if !want.contains_key(inode) {
                diffs.push(format!(
                    "inode {inode} ({}) not in C's database",
                    String::from_utf8_lossy(&g.name)
                ));
            }
        }
        for d in diffs.into_iter().take(5) {
            self.problem(format!("final state: {d}"));
        }
    }
}

/// The first dcdb STATE a process sent (its memdb index) and the index's
/// mtime: for a new database, the wall-clock second it was created at,
/// which no offline replay can know otherwise (the first record can come
/// a second later, or more on a fast clock).
fn first_state(records: &[Record], me: Member) -> Option<(Vec<u8>, u32)> {
    for r in records {
        let e = r.event().ok()?;
        if e.local_pid != me.pid {
            return None;
        }
        if let (EventBody::Mcast { msg, .. }, Group::Dcdb) = (&e.body, Group::of(&e.group)) {
            if let Ok(Decoded::Dcdb(m)) = Decoded::decode(Group::Dcdb, msg) {
                if let pmxcfs_wire::dcdb::Payload::Index(index) = m.payload {
                    let bytes = Framing::parse(msg).map(|(p, _)| p.to_vec()).ok()?;
                    return Some((bytes, index.mtime));
                }
            }
        }
    }
    None
}

/// The local request that made a node send `msg`: the FUSE operation of a
/// dcdb message, the IPC call of a kvstore message. `None` for a message
/// only the protocol sends.
pub fn request_of(group: Group, msg: &[u8]) -> Option<Request> {
    let (payload, framing) = Framing::parse(msg).ok()?;
    if framing.header.msg_type != MessageType::Normal {
        return None;
    }
    match group {
        Group::Dcdb => {
            let subtype = Subtype::from(framing.header.subtype);
            if subtype == Subtype::UnlockRequest {
                // utime(0) on a lock directory sends UNLOCK_REQUEST, then
                // the MTIME; the core makes both from the request.
                let m = pmxcfs_wire::dcdb::UnlockMessage::decode(payload).ok()?;
                return Some(Request::SetMtime {
                    path: m.path,
                    mtime: 0,
                });
            }
            let m = FuseMessage::decode(payload).ok()?;
            let path = pmxcfs_wire::codec::c_str(m.path.as_deref()?).to_vec();
            Some(match subtype {
                Subtype::Write if m.flags != 0 => Request::Truncate {
                    path,
                    size: m.offset,
                },
                Subtype::Write => Request::Write {
                    path,
                    offset: m.offset,
                    data: m.data,
                },
                Subtype::Create => Request::Create { path },
                Subtype::Mkdir => Request::Mkdir { path },
                Subtype::Delete => Request::Delete { path },
                Subtype::Rename => Request::Rename {
                    from: path,
                    to: pmxcfs_wire::codec::c_str(m.to.as_deref()?).to_vec(),
                },
                Subtype::Mtime => Request::SetMtime {
                    path,
                    mtime: m.offset,
                },
                _ => return None,
            })
        }
        Group::Kvstore => {
            let decoded = pmxcfs_wire::kvstore::Message::decode(msg).ok()?;
            let (body, pid) = match decoded.payload {
                pmxcfs_wire::kvstore::Payload::Update(u) => (
                    RequestBody::SetStatus {
                        name: name_field(u.key()),
                        value: u.value.clone(),
                    },
                    0,
                ),
                pmxcfs_wire::kvstore::Payload::Log(e) => {
                    let z = |b: &[u8]| [pmxcfs_wire::codec::c_str(b), b"\0"].concat();
                    (
                        RequestBody::LogClusterMsg {
                            priority: e.priority,
                            ident: z(&e.ident),
                            tag: z(&e.tag),
                            msg: [unsanitize(pmxcfs_wire::codec::c_str(&e.msg)), vec![0]].concat(),
                        },
                        e.pid,
                    )
                }
                _ => return None,
            };
            Some(Request::Ipc {
                client: Client {
                    readonly: false,
                    pid,
                },
                bytes: IpcRequest::new(body).to_bytes(),
            })
        }
        Group::Other => None,
    }
}

/// Copy into `ours` the bytes C leaves uninitialised in a kvstore NORMAL
/// message (see the module comment), when both are the same kind of
/// message of the same length; nothing else is touched.
fn adopt_uninitialised(ours: &mut [u8], recorded: &[u8]) {
    use pmxcfs_wire::kvstore::KEY_FIELD_LEN;
    const HEADER: usize = pmxcfs_wire::dfsm::NORMAL_HEADER_LEN;
    if ours.len() != recorded.len() || ours.len() < HEADER || ours[..4] != recorded[..4] {
        return;
    }
    let subtype = u16::from_le_bytes([ours[2], ours[3]]);
    let is_normal = u16::from_le_bytes([ours[0], ours[1]]) == 0;
    match (is_normal, subtype) {
        (true, 1) if ours.len() >= HEADER + KEY_FIELD_LEN => {
            let key = &ours[HEADER..HEADER + KEY_FIELD_LEN];
            let Some(nul) = key.iter().position(|&b| b == 0) else {
                return;
            };
            if recorded[HEADER..HEADER + nul + 1] == ours[HEADER..HEADER + nul + 1] {
                ours[HEADER + nul + 1..HEADER + KEY_FIELD_LEN]
                    .copy_from_slice(&recorded[HEADER + nul + 1..HEADER + KEY_FIELD_LEN]);
            }
        }
        (true, 3) if ours.len() >= HEADER + pmxcfs_wire::clog::ENTRY_FIXED_LEN => {
            let n = ours.len();
            ours[n - 4..].copy_from_slice(&recorded[n - 4..]);
        }
        _ => {}
    }
}

/// The inverse of C's `utf8_to_ascii` on its own output: `\\"` → `"`,
/// `#ddd` → that byte, `\\uXXXX` → that character. Sanitising the result
/// again gives the input back, which is all the replay needs.
pub fn unsanitize(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && s.get(i + 1) == Some(&b'"') {
            out.push(b'"');
            i += 2;
        } else if s[i] == b'#' && s.len() >= i + 4 && s[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let v: u32 = std::str::from_utf8(&s[i + 1..i + 4])
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            if v < 256 {
                out.push(v as u8);
            } else {
                out.extend_from_slice(&s[i..i + 4]);
            }
            i += 4;
        } else if s[i] == b'\\'
            && s.get(i + 1) == Some(&b'u')
            && s.len() >= i + 6
            && s[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit)
        {
            let v = u32::from_str_radix(std::str::from_utf8(&s[i + 2..i + 6]).unwrap_or("0"), 16)
                .unwrap_or(0);
            match char::from_u32(v) {
                Some(c) => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                None => out.extend_from_slice(&s[i..i + 6]),
            }
            i += 6;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// nodeid → (name, ring0_addr) of a corosync.conf's nodelist.
pub fn parse_nodelist(conf: &str) -> BTreeMap<u32, (String, String)> {
    let mut out = BTreeMap::new();
    let mut current: HashMap<String, String> = HashMap::new();
    let mut in_node = false;
    for line in conf.lines() {
        let line = line.trim();
        if line.starts_with("node {") || line == "node {" {
            in_node = true;
            current.clear();
        } else if in_node && line == "}" {
            in_node = false;
            if let Some(id) = current.get("nodeid").and_then(|v| v.parse().ok()) {
                let name = current
                    .get("name")
                    .or_else(|| current.get("ring0_addr"))
                    .cloned()
                    .unwrap_or_default();
                let addr = current.get("ring0_addr").cloned().unwrap_or_default();
                out.insert(id, (name, addr));
            }
        } else if in_node {
            if let Some((k, v)) = line.split_once(':') {
                current.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    out
}

/// Replay every node of a scenario folder.
pub fn check_scenario(dir: &Path) -> Result<Vec<NodeReport>, String> {
    let mut nodes: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let label = name.strip_suffix(".pcap")?.to_string();
            label.starts_with("node").then_some((label, p))
        })
        .collect();
    nodes.sort();
    if nodes.is_empty() {
        return Err(format!("{}: no nodeN.pcap", dir.display()));
    }
    let mut reports = Vec::new();
    for (label, path) in nodes {
        reports.push(replay_node(dir, &label, &path)?.0);
    }
    Ok(reports)
}

/// Replay one node's recording (`path`, in scenario folder `dir`): its
/// report, and the node core as its last process left it — the type the
/// daemon and the simulator drive.
pub fn replay_node(
    dir: &Path,
    label: &str,
    path: &Path,
) -> Result<(NodeReport, Option<Node>), String> {
    let records = read_capture(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut r = Replayer::new(dir, label);
    r.nodelist = parse_nodelist(&String::from_utf8_lossy(&r.corosync_conf));
    let last = r.run(&records);
    r.compare_final_state();
    Ok((r.report, last))
}
