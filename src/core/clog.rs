//! The cluster log of one node (spec §3.5): the ring buffer, the dedup
//! table that keeps each node's entries in (time, uid) order, and the JSON
//! dump of `.clusterlog` and GET_CLUSTER_LOG.

use std::collections::HashMap;
use std::fmt::Write as _;

use pmxcfs_wire::clog::{fnv1a64, ClogBuffer, ClogEntry, LogRecord, DEFAULT_BUFFER_SIZE};

/// Entries `.clusterlog` shows, and the IPC default.
pub const DEFAULT_MAX_ENTRIES: usize = 50;

#[derive(Clone, Debug)]
pub struct ClusterLog {
    ring: ClogBuffer,
    /// node digest → newest (time, uid) inserted.
    dedup: HashMap<u64, (u32, u32)>,
    /// Per-process uid counter of packed entries.
    uid: u32,
}

impl Default for ClusterLog {
    fn default() -> Self {
        ClusterLog::new()
    }
}

impl ClusterLog {
    pub fn new() -> ClusterLog {
        ClusterLog {
            ring: ClogBuffer::new(DEFAULT_BUFFER_SIZE),
            dedup: HashMap::new(),
            uid: 0,
        }
    }

    pub fn ring(&self) -> &ClogBuffer {
        &self.ring
    }

    /// Pack a local entry with the next uid; `None` if C would not pack it
    /// (priority above 7).
    pub fn pack(&mut self, record: &LogRecord<'_>) -> Option<ClogEntry> {
        let entry = ClogEntry::pack(record, self.uid.wrapping_add(1))?;
        self.uid = self.uid.wrapping_add(1);
        Some(entry)
    }

    /// `clusterlog_insert`: accept an entry only if it is newer, by (time,
    /// uid), than the last one of its node.
    pub fn insert(&mut self, entry: &ClogEntry) -> bool {
        let newer = match self.dedup.get(&entry.node_digest) {
            None => true,
            Some(&(time, uid)) => entry.time > time || (entry.time == time && entry.uid > uid),
        };
        if !newer {
            return false;
        }
        self.dedup
            .insert(entry.node_digest, (entry.time, entry.uid));
        self.ring.push(entry);
        true
    }

    /// `clog_sort` (spec §3.5.4): the reachable entries, deduplicated and
    /// ordered by C's comparator, copied oldest first into a fresh ring of
    /// the same size; an empty ring stays as it is.
    pub fn sort(&mut self) {
        if self.ring.cpos() == 0 {
            return;
        }
        let mut sorted: Vec<ClogEntry> = Vec::new();
        for e in self.ring.entries().unwrap_or_default() {
            insert_sorted(&mut sorted, e.entry);
        }
        let mut ring = ClogBuffer::new(self.ring.size() as usize);
        for e in &sorted {
            ring.push(e);
        }
        self.ring = ring;
    }

    /// The kvstore STATE: the sorted ring (C's `clusterlog_get_state`).
    pub fn state(&mut self) -> Vec<u8> {
        self.sort();
        self.ring.as_bytes().to_vec()
    }

    /// `clusterlog_merge` (spec §3.5.5): newest entries first across all
    /// logs (ties to the earliest log), each new one kept, until the new
    /// ring would be full; the result, oldest first, becomes our log.
    /// `logs` holds the members' rings in member order, ours included.
    pub fn merge(&mut self, logs: &[Option<ClogBuffer>]) {
        let lists: Vec<Vec<pmxcfs_wire::clog::RingEntry>> = logs
            .iter()
            .map(|l| {
                l.as_ref()
                    .and_then(|l| l.entries().ok())
                    .unwrap_or_default()
            })
            .collect();
        let mut heads = vec![0usize; lists.len()];
        let mut sorted: Vec<ClogEntry> = Vec::new();
        let mut dedup: HashMap<u64, (u32, u32)> = HashMap::new();
        let limit = (DEFAULT_BUFFER_SIZE - 8 - pmxcfs_wire::clog::MAX_ENTRY_SIZE) as u64;
        let mut total = 0u64;
        loop {
            let mut best: Option<usize> = None;
            for (i, list) in lists.iter().enumerate() {
                if let Some(e) = list.get(heads[i]) {
                    let newer = best.is_none_or(|b| e.entry.time > lists[b][heads[b]].entry.time);
                    if e.entry.time > 0 && newer {
                        best = Some(i);
                    }
                }
            }
            let Some(b) = best else { break };
            let re = &lists[b][heads[b]];
            heads[b] += 1;
            if insert_sorted(&mut sorted, re.entry.clone()) {
                let d = dedup
                    .entry(re.entry.node_digest)
                    .or_insert((re.entry.time, re.entry.uid));
                if (re.entry.time, re.entry.uid) > *d {
                    *d = (re.entry.time, re.entry.uid);
                }
                total += re.entry.next.saturating_sub(re.pos) as u64;
                if total >= limit {
                    break;
                }
            }
        }
        let mut ring = ClogBuffer::new(DEFAULT_BUFFER_SIZE);
        for e in &sorted {
            ring.push(e);
        }
        self.ring = ring;
        self.dedup = dedup;
    }

    /// The JSON dump (spec §3.6.4): newest first, at most `max` entries
    /// printed, optionally only those whose ident is `user`.
    pub fn dump_json(&self, max: usize, user: Option<&[u8]>) -> String {
        let max = if max == 0 { DEFAULT_MAX_ENTRIES } else { max };
        let filter = user.filter(|u| !u.is_empty()).map(|u| {
            let mut with_nul = u.to_vec();
            with_nul.push(0);
            fnv1a64(&with_nul)
        });
        let mut s = String::from("{\n\"data\": [\n");
        let mut printed = 0;
        // Our own ring is well formed; a walk error cannot happen here.
        for e in self.ring.entries().unwrap_or_default() {
            if printed >= max || e.wraps {
                break;
            }
            let e = e.entry;
            if filter.is_some_and(|d| d != e.ident_digest) {
                continue;
            }
            if printed > 0 {
                s.push_str(",\n");
            }
            let _ = write!(
                s,
                "{{\"uid\": {}, \"time\": {}, \"pri\": {}, \"tag\": \"{}\", \"pid\": {}, \"node\": \"{}\", \"user\": \"{}\", \"msg\": \"{}\"}}",
                e.uid,
                e.time,
                e.priority,
                e.tag_str(),
                e.pid,
                e.node_str(),
                e.ident_str(),
                e.msg_str()
            );
            printed += 1;
        }
        if printed > 0 {
            s.push('\n');
        }
        s.push_str("]\n}\n");
        s
    }
}

/// C's comparator (spec §3.5.4): time, then the node digests' difference
/// truncated to 32 bits, then uid, each as a signed 32-bit difference.
fn compare(a: &ClogEntry, b: &ClogEntry) -> i32 {
    let t = a.time.wrapping_sub(b.time) as i32;
    if t != 0 {
        return t;
    }
    let d = a.node_digest.wrapping_sub(b.node_digest) as u32 as i32;
    if d != 0 {
        return d;
    }
    a.uid.wrapping_sub(b.uid) as i32
}

/// Insert keeping the order; an entry comparing equal to one present is
/// the same entry (GTree semantics). Returns whether it was new.
fn insert_sorted(sorted: &mut Vec<ClogEntry>, e: ClogEntry) -> bool {
    match sorted.binary_search_by(|x| compare(x, &e).cmp(&0)) {
        Ok(_) => false,
        Err(pos) => {
            sorted.insert(pos, e);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(node: &'a [u8], ident: &'a [u8], time: u32, msg: &'a [u8]) -> LogRecord<'a> {
        LogRecord {
            node,
            ident,
            tag: b"cluster",
            pid: 7779,
            time,
            priority: 6,
            msg,
        }
    }

    #[test]
    fn starting_entry_matches_the_observed_bytes() {
        let mut log = ClusterLog::new();
        let e = log
            .pack(&record(
                b"refnode1",
                b"root",
                1795234429,
                b"starting cluster log",
            ))
            .unwrap();
        assert!(log.insert(&e));
        assert_eq!(
            log.dump_json(0, None),
            "{\n\"data\": [\n{\"uid\": 1, \"time\": 1795234429, \"pri\": 6, \"tag\": \"cluster\", \"pid\": 7779, \"node\": \"refnode1\", \"user\": \"root\", \"msg\": \"starting cluster log\"}\n]\n}\n"
        );
        assert_eq!(log.dump_json(0, None).len(), 155);
    }

    #[test]
    fn filter_max_and_dedup() {
        let mut log = ClusterLog::new();
        for (t, ident) in [
            (10, &b"root"[..]),
            (11, b"root@pam"),
            (12, b"root@pam"),
            (13, b"root"),
        ] {
            let e = log.pack(&record(b"n1", ident, t, b"m")).unwrap();
            assert!(log.insert(&e));
        }
        let all = log.dump_json(0, None);
        assert_eq!(all.matches("\"uid\"").count(), 4);
        assert!(all.find("\"time\": 13").unwrap() < all.find("\"time\": 10").unwrap());
        let pam = log.dump_json(1, Some(b"root@pam"));
        assert_eq!(pam.matches("\"uid\"").count(), 1);
        assert!(pam.contains("\"time\": 12"));
        assert_eq!(log.dump_json(0, Some(b"nobody")), "{\n\"data\": [\n]\n}\n");
        // An older entry of the same node is dropped.
        let old = ClogEntry::pack(&record(b"n1", b"root", 5, b"late"), 99).unwrap();
        assert!(!log.insert(&old));
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;

    fn entry(time: u32, node_digest: u64, uid: u32) -> ClogEntry {
        let mut e = ClogEntry::pack(
            &LogRecord {
                node: b"n",
                ident: b"i",
                tag: b"t",
                pid: 1,
                time,
                priority: 1,
                msg: b"m",
            },
            uid,
        )
        .unwrap();
        e.node_digest = node_digest;
        e
    }

    /// C compares node digests by their 64-bit difference truncated to a
    /// 32-bit int (spec §9.6): digests differing only in the high half are
    /// the same entry. Replicated, so rings stay identical with C peers.
    #[test]
    fn digest_comparison_is_truncated_as_in_c() {
        let mut v = Vec::new();
        assert!(insert_sorted(&mut v, entry(10, 0x1_0000_0005, 1)));
        assert!(!insert_sorted(&mut v, entry(10, 0x2_0000_0005, 1)));
        assert!(insert_sorted(&mut v, entry(10, 0x2_0000_0006, 1)));
        assert!(insert_sorted(&mut v, entry(9, 0, 1)));
        assert_eq!(
            v.iter().map(|e| e.time).collect::<Vec<_>>(),
            vec![9, 10, 10]
        );
    }

    #[test]
    fn merge_keeps_every_new_entry_newest_last() {
        let mut a = ClusterLog::new();
        let mut b = ClusterLog::new();
        let add = |log: &mut ClusterLog, node: &[u8], time: u32| {
            let e = log
                .pack(&LogRecord {
                    node,
                    ident: b"root",
                    tag: b"t",
                    pid: 1,
                    time,
                    priority: 6,
                    msg: b"m",
                })
                .unwrap();
            log.insert(&e);
        };
        add(&mut a, b"a", 5);
        add(&mut b, b"b", 3);
        add(&mut a, b"a", 7);
        add(&mut b, b"b", 6);
        let logs = [Some(a.ring().clone()), Some(b.ring().clone())];
        a.merge(&logs);
        let times: Vec<u32> = a
            .ring()
            .entries()
            .unwrap()
            .iter()
            .map(|e| e.entry.time)
            .collect();
        assert_eq!(times, vec![7, 6, 5, 3]);
        // Merging again changes nothing.
        let before = a.ring().as_bytes().to_vec();
        let logs = [Some(a.ring().clone()), Some(b.ring().clone())];
        a.merge(&logs);
        assert_eq!(a.ring().as_bytes(), &before[..]);
    }
}
