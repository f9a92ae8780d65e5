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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pmxcfs::core::dfsm::Member;
use pmxcfs::core::memdb::{Memdb, Row};
use pmxcfs::core::node::{Node, Time};
use pmxcfs_wire::dfsm::Framing;
use pmxcfs_wire::Codec;

use crate::capture::{read_capture, Event, EventBody, Record, CS_OK};
use crate::describe::{group_of, Decoded, NodeGroup};
use crate::drive::{config_from_nodelist, describe, fresh_index, input_of, node_names, Driven};
pub use crate::drive::{parse_nodelist, request_of, unsanitize};
use crate::sqldump::parse_dump;

/// How far back a callback's reaction may show it was handled (seconds).
const REACTION_SECS: u32 = 3;

/// When the C node handled a callback (a confchg, a delivery): at its
/// record's time, unless what it sent in reaction shows an earlier second.
/// The recorder stamps a callback when it is handed over, and C reads its
/// clock for a reaction (a SYNC_START after a confchg, a STATE after a
/// SYNC_START) inside the callback, a moment earlier or later; across a
/// second boundary the stamp of the reaction is the truth. The reaction is
/// the process's next record in the same group, when it is its own
/// message: the callback is then taken as handled at the end of that
/// message's header second (the same rule as `shadow`'s, for a recording
/// whose clock runs behind instead of ahead).
fn handled_at(after: &[Record], event: &Event, recorded: Time) -> Time {
    if !matches!(
        event.body,
        EventBody::Confchg { .. } | EventBody::Deliver { .. }
    ) {
        return recorded;
    }
    // The reaction is sent inside the callback: only the records of the
    // next few seconds can hold it.
    let next = after
        .iter()
        .take_while(|r| r.ts_sec <= recorded.secs().saturating_add(REACTION_SECS))
        .filter_map(|r| r.event().ok())
        .take_while(|e| e.local_pid == event.local_pid)
        .find(|e| e.group == event.group);
    let Some(Event {
        body: EventBody::Mcast { result, msg, .. },
        ..
    }) = next
    else {
        return recorded;
    };
    if result != CS_OK {
        return recorded;
    }
    let Some(second) = crate::reaction_time::reaction_second(group_of(&event.group), &msg) else {
        return recorded;
    };
    if second < recorded.secs() && recorded.secs() - second <= REACTION_SECS {
        Time::from_secs(second).plus_micros(999_999)
    } else {
        recorded
    }
}

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

struct Replayer {
    label: String,
    dir: PathBuf,
    corosync_conf: Vec<u8>,
    /// nodeid → (name, ring0_addr) from corosync.conf.
    nodelist: BTreeMap<u32, (String, String)>,
    /// The database as the last process left it: rows by inode.
    store: BTreeMap<u64, Row>,
    report: NodeReport,
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
            store: BTreeMap::new(),
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

    /// The corosync.conf a new database of this node would import: the
    /// scenario's, or the newest one the node's tree held (the host's file
    /// follows /etc/pve).
    fn conf_candidates(&self) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        if let Ok((m, _)) = Memdb::from_rows(self.store.values().cloned().collect(), 0) {
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
        if self.store.is_empty() {
            return (StartDb::Fresh, self.conf_candidates().into_iter().next());
        }
        let Some(state) = first_state else {
            return (StartDb::CarriedOver, None);
        };
        let carried = Memdb::from_rows(self.store.values().cloned().collect(), start)
            .map(|(m, _)| m.index().to_bytes());
        if carried.as_deref().ok() == Some(state) {
            return (StartDb::CarriedOver, None);
        }
        for conf in self.conf_candidates() {
            if fresh_index(&conf, start) == state {
                return (StartDb::Fresh, Some(conf));
            }
        }
        (StartDb::CarriedOver, None)
    }

    /// Start a process the way the daemon boots, then join both groups.
    fn start_process(&mut self, me: Member, records: &[Record]) -> Option<Driven> {
        let first_state = first_state(records, me);
        let start = match &first_state {
            // A new database is stamped with the second it was created.
            Some((_, index_mtime)) => *index_mtime,
            None => records.first().map_or(0, |r| r.ts_sec),
        };
        let (db, conf) = self.start_db(first_state.as_ref().map(|(s, _)| s.as_slice()), start);
        let start = match db {
            StartDb::Fresh => start,
            StartDb::CarriedOver => records.first().map_or(start, |r| r.ts_sec),
        };
        let rows = match db {
            StartDb::CarriedOver if !self.store.is_empty() => {
                Some(self.store.values().cloned().collect())
            }
            StartDb::CarriedOver => None,
            StartDb::Fresh => {
                if !self.store.is_empty() {
                    self.report.notes.push(format!(
                        "process {} started on a new database (its first state is that of a fresh config.db)",
                        me.pid
                    ));
                }
                self.store.clear();
                None
            }
        };
        let conf =
            conf.or_else(|| (!self.corosync_conf.is_empty()).then(|| self.corosync_conf.clone()));
        match Driven::boot(
            config_from_nodelist(&self.nodelist, me),
            me,
            rows,
            conf.as_deref(),
            node_names(&self.nodelist),
            Time::from_secs(start),
        ) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(format!("database does not load at restart: {e}"));
                None
            }
        }
    }

    fn feed(&mut self, p: &mut Driven, event: &Event, now: Time) {
        let group = group_of(&event.group);
        match &event.body {
            EventBody::Mcast { result, msg, .. } if group != None => {
                if *result != CS_OK {
                    // A TRY_AGAIN attempt: the retry that follows carries
                    // the same bytes and is the one matched.
                    return;
                }
                self.report.sends_total += 1;
                match p.sent(group, msg, false) {
                    Ok(()) => self.report.sends_matched += 1,
                    Err(m) => self.problem(m.describe()),
                }
            }
            _ => {
                if let Some(input) = input_of(event) {
                    p.input(now, input);
                }
            }
        }
    }

    fn end_process(&mut self, p: &mut Driven) {
        for (group, extra, _) in p.take_pending() {
            self.report.sends_total += 1;
            let s = format!("sent {} which C did not send", describe(group, &extra));
            self.problem(s);
        }
        self.store = std::mem::take(&mut p.rows);
    }

    /// Replay every process; the last one's node.
    fn run(&mut self, records: &[Record]) -> Option<Node> {
        let mut current: Option<Driven> = None;
        for (i, record) in records.iter().enumerate() {
            let event = match record.event() {
                Ok(e) => e,
                Err(e) => {
                    self.problem(format!("record {i}: {e}"));
                    continue;
                }
            };
            let now = handled_at(
                &records[i + 1..],
                &event,
                Time(record.ts_sec as u64 * 1_000_000 + record.ts_usec as u64),
            );
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
            p.run_timers(now);
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
        if want == self.store {
            self.report.final_state_matched = true;
            return;
        }
        let mut diffs = Vec::new();
        for (inode, w) in &want {
            match self.store.get(inode) {
                Some(g) if g == w => {}
                Some(g) => diffs.push(format!("inode {inode}: ours {g:?}, C {w:?}")),
                None => diffs.push(format!(
                    "inode {inode} ({}) missing",
                    String::from_utf8_lossy(&w.name)
                )),
            }
        }
        for (inode, g) in &self.store {
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
        if let (EventBody::Mcast { msg, .. }, Some(NodeGroup::Dcdb)) = (&e.body, group_of(&e.group))
        {
            if let Ok(Decoded::Dcdb(m)) = Decoded::decode(Some(NodeGroup::Dcdb), msg) {
                if let pmxcfs_wire::dcdb::Payload::Index(index) = m.payload {
                    let bytes = Framing::parse(msg).map(|(p, _)| p.to_vec()).ok()?;
                    return Some((bytes, index.mtime));
                }
            }
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::EventKind;
    use pmxcfs_wire::dfsm::{Epoch, MessageType};

    const KV: &[u8] = b"pve_kvstore_v1\0";

    fn record(at: Time, group: &[u8], kind: EventKind, body: EventBody) -> (Record, Event) {
        let event = Event::new(kind, 1, 100, group, body);
        let micros = at.0 % 1_000_000;
        (Record::from_event(at.secs(), micros as u32, &event), event)
    }

    fn sync_start(second: u32) -> EventBody {
        let mut msg = Vec::new();
        Framing::state(
            MessageType::SyncStart,
            1,
            second,
            Epoch {
                epoch: 1,
                time: second,
                nodeid: 1,
                pid: 100,
            },
        )
        .encode(&mut msg);
        EventBody::Mcast {
            guarantee: 2,
            result: CS_OK,
            msg,
        }
    }

    fn confchg() -> EventBody {
        EventBody::Confchg {
            members: vec![],
            left: vec![],
            joined: vec![],
        }
    }

    #[test]
    fn a_callback_is_handled_in_the_second_its_reaction_carries() {
        let recorded = Time::from_secs(1001).plus_micros(2_000);
        let (_, cb) = record(recorded, KV, EventKind::Confchg, confchg());
        // C read its clock for the SYNC_START in second 1000.
        let (reaction, _) = record(
            recorded.plus_micros(100),
            KV,
            EventKind::Mcast,
            sync_start(1000),
        );
        let at = handled_at(&[reaction], &cb, recorded);
        assert_eq!(at.secs(), 1000);
        // A reaction in the same second, or another group's next record,
        // or one too far back, leaves the record's time.
        let (same, _) = record(recorded, KV, EventKind::Mcast, sync_start(1001));
        assert_eq!(handled_at(&[same], &cb, recorded), recorded);
        let (other, _) = record(
            recorded,
            b"pve_dcdb_v1\0",
            EventKind::Mcast,
            sync_start(1000),
        );
        assert_eq!(handled_at(&[other], &cb, recorded), recorded);
        let (far, _) = record(recorded, KV, EventKind::Mcast, sync_start(990));
        assert_eq!(handled_at(&[far], &cb, recorded), recorded);
    }
}
