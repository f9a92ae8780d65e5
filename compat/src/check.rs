//! `pmxcfs-replay check`: run our core with a recorded node's identity and
//! inputs, and compare what it sends and the database it ends with against
//! what the C node sent and left.
//!
//! For each `nodeN.pcap` of a scenario folder, every process of that node
//! (a restart shows as a new `local_pid`) is replayed in order, carrying the
//! database over, as the real node did:
//! - CONFCHG, DELIVER and QUORUM records are fed to the core as they were;
//! - a recorded MCAST is compared with the next message the core decided to
//!   send in that group; when the core has nothing pending, the MCAST was
//!   caused by a local request (a FUSE operation, an IPC call), which is
//!   decoded from the recording and handed to the core as that request;
//! - at the end, the database rows are compared with
//!   `expected/nodeN.config.sql`.
//!
//! Taken from the recording, because offline they cannot be known:
//! - the time: the core's clock reads the timestamp (seconds) of the record
//!   being processed; a process starts at its first record's second, or,
//!   with a fresh database, at the second its database was created, as the
//!   index mtime of its first STATE shows;
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

use pmxcfs::core::dcdb::Dcdb;
use pmxcfs::core::dfsm::{Dfsm, Member, Output};
use pmxcfs::core::kvstore::Kvstore;
use pmxcfs::core::memdb::{DbChange, Memdb, Row};
use pmxcfs::core::status::Status;
use pmxcfs_wire::clog::LogRecord;
use pmxcfs_wire::dfsm::{Framing, MessageType};

use crate::capture::{read_capture, Event, EventBody, Record, CS_OK};
use crate::describe::{Decoded, Group};
use crate::sqldump::parse_dump;

/// The verify period of the dcdb timer.
const VERIFY_PERIOD: u32 = 3600;

/// The outcome for one node.
#[derive(Clone, Debug, Default)]
pub struct NodeReport {
    pub node: String,
    pub sends_matched: usize,
    pub sends_total: usize,
    pub final_state_matched: bool,
    pub problems: Vec<String>,
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
    fn apply(&mut self, changes: Vec<DbChange>) {
        for c in changes {
            c.apply_to(&mut self.rows);
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

/// One process of the node, from its first record to its last.
struct Process {
    me: Member,
    start: u32,
    dcdb: Dfsm<Dcdb>,
    kv: Dfsm<Kvstore>,
    pending: HashMap<Group, VecDeque<Vec<u8>>>,
    last_verify: u32,
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

    /// Open the node's database as the daemon does at start: a fresh one
    /// gets its version row and imports corosync.conf (cluster mode).
    fn start_process(&mut self, me: Member, start: u32) -> Process {
        let rows: Vec<Row> = self.store.rows.values().cloned().collect();
        let fresh = rows.is_empty();
        let (mut memdb, first) = match Memdb::from_rows(rows, start) {
            Ok(m) => m,
            Err(e) => {
                self.problem(format!("database does not load at restart: {e}"));
                Memdb::from_rows(Vec::new(), start).expect("empty tree")
            }
        };
        if let Some(c) = first {
            self.store.apply(vec![c]);
        }
        if fresh && !self.corosync_conf.is_empty() {
            let _ = memdb.create(b"corosync.conf", 0, start);
            let _ = memdb.write(b"corosync.conf", 0, start, &self.corosync_conf, 0, true);
        }
        self.store.apply(memdb.take_changes());
        let (name, ip) = self.nodelist.get(&me.nodeid).cloned().unwrap_or_default();
        let mut status = Status::new(&name, start);
        let starting = status.clog.pack(&LogRecord {
            node: name.as_bytes(),
            ident: b"root",
            tag: b"cluster",
            pid: me.pid,
            time: start,
            priority: 6,
            msg: b"starting cluster log",
        });
        if let Some(e) = starting {
            status.clog.insert(&e);
        }
        let mut kvstore = Kvstore::new(status, &ip);
        kvstore.nodes = self
            .nodelist
            .iter()
            .map(|(id, (n, _))| (*id, n.clone()))
            .collect();
        Process {
            me,
            start,
            dcdb: Dfsm::new(Dcdb::new(memdb), me),
            kv: Dfsm::new(kvstore, me),
            pending: HashMap::new(),
            last_verify: start,
        }
    }

    fn drain(&mut self, p: &mut Process) {
        for out in p.dcdb.take_outputs() {
            if let Output::Send(bytes) = out {
                p.pending.entry(Group::Dcdb).or_default().push_back(bytes);
            }
        }
        for out in p.kv.take_outputs() {
            if let Output::Send(bytes) = out {
                p.pending
                    .entry(Group::Kvstore)
                    .or_default()
                    .push_back(bytes);
            }
        }
        self.store.apply(p.dcdb.app.memdb.take_changes());
        let _ = p.dcdb.app.take_effects();
        // RRD files are not part of what a replay compares.
        p.kv.app.rrd_samples.clear();
    }

    /// The verify timer, checked before each input at that input's time.
    fn tick(&mut self, p: &mut Process, now: u32) {
        if now.saturating_sub(p.last_verify) >= VERIFY_PERIOD {
            p.last_verify = now;
            p.dcdb.verify_request(now);
            self.drain(p);
        }
    }

    fn feed(&mut self, p: &mut Process, event: &Event, now: u32) {
        let group = Group::of(&event.group);
        match &event.body {
            EventBody::Quorum { quorate, .. } => {
                p.dcdb.app.quorate = *quorate != 0;
            }
            EventBody::Confchg {
                members, joined, ..
            } => {
                let members: Vec<Member> = members.iter().map(Member::from).collect();
                match group {
                    Group::Dcdb => p.dcdb.confchg(&members, !joined.is_empty(), now),
                    Group::Kvstore => p.kv.confchg(&members, !joined.is_empty(), now),
                    Group::Other => {}
                }
                self.drain(p);
            }
            EventBody::Deliver {
                sender_nodeid,
                sender_pid,
                msg,
            } => {
                let from = Member {
                    nodeid: *sender_nodeid,
                    pid: *sender_pid,
                };
                match group {
                    Group::Dcdb => p.dcdb.deliver(from, msg, now),
                    Group::Kvstore => p.kv.deliver(from, msg, now),
                    Group::Other => {}
                }
                self.drain(p);
            }
            EventBody::Mcast { result, msg, .. } if group != Group::Other => {
                if *result != CS_OK {
                    // A TRY_AGAIN attempt: the retry that follows carries
                    // the same bytes and is the one matched.
                    return;
                }
                self.report.sends_total += 1;
                if p.pending.entry(group).or_default().is_empty() {
                    self.local_request(p, group, msg, now);
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
    /// (kvstore). Hand the core that request.
    fn local_request(&mut self, p: &mut Process, group: Group, msg: &[u8], now: u32) {
        let Ok(decoded) = Decoded::decode(group, msg) else {
            return;
        };
        match decoded {
            Decoded::Dcdb(m) if m.subtype().is_some() => {
                if let Ok((payload, f)) = Framing::parse(msg) {
                    p.dcdb.send_normal(f.header.subtype, payload, now);
                }
            }
            Decoded::Kvstore(m) => match m.payload {
                pmxcfs_wire::kvstore::Payload::Update(u) => {
                    let key = u.key().to_vec();
                    p.kv.with_app(now, |app, env| {
                        let _ = app.set_local(env, &key, &u.value);
                    });
                }
                pmxcfs_wire::kvstore::Payload::Log(e) => {
                    let msg = unsanitize(pmxcfs_wire::codec::c_str(&e.msg));
                    let (ident, tag) = (
                        pmxcfs_wire::codec::c_str(&e.ident).to_vec(),
                        pmxcfs_wire::codec::c_str(&e.tag).to_vec(),
                    );
                    p.kv.with_app(e.time, |app, env| {
                        app.log_local(env, &ident, &tag, e.pid, e.priority, &msg)
                    });
                }
                _ => {}
            },
            _ => {}
        }
        self.drain(p);
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

    fn run(&mut self, records: &[Record]) {
        let mut current: Option<Process> = None;
        for (i, record) in records.iter().enumerate() {
            let event = match record.event() {
                Ok(e) => e,
                Err(e) => {
                    self.problem(format!("record {i}: {e}"));
                    continue;
                }
            };
            let now = record.ts_sec;
            let me = Member {
                nodeid: event.local_nodeid,
                pid: event.local_pid,
            };
            if current.as_ref().is_none_or(|p| p.me != me) {
                if let Some(mut p) = current.take() {
                    self.end_process(&mut p);
                }
                let start = if self.store.rows.is_empty() {
                    fresh_start_time(&records[i..], me).unwrap_or(now)
                } else {
                    now
                };
                current = Some(self.start_process(me, start));
            }
            let mut p = current.take().expect("a process");
            self.tick(&mut p, now);
            self.feed(&mut p, &event, now);
            let _ = p.start;
            current = Some(p);
        }
        if let Some(mut p) = current.take() {
            self.end_process(&mut p);
        }
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

/// The second a process with a fresh database started at: the mtime of
/// the index in its first dcdb STATE, which is still the one its database
/// got at creation (a wall-clock second no offline replay can know; the
/// first record can come a second later, or more on a fast clock).
fn fresh_start_time(records: &[Record], me: Member) -> Option<u32> {
    for r in records {
        let e = r.event().ok()?;
        if e.local_pid != me.pid {
            return None;
        }
        if let (EventBody::Mcast { msg, .. }, Group::Dcdb) = (&e.body, Group::of(&e.group)) {
            if let Ok(Decoded::Dcdb(m)) = Decoded::decode(Group::Dcdb, msg) {
                if let pmxcfs_wire::dcdb::Payload::Index(index) = m.payload {
                    return Some(index.mtime);
                }
            }
        }
    }
    None
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
        let records = read_capture(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut r = Replayer::new(dir, &label);
        r.nodelist = parse_nodelist(&String::from_utf8_lossy(&r.corosync_conf));
        r.run(&records);
        r.compare_final_state();
        reports.push(r.report);
    }
    Ok(reports)
}
