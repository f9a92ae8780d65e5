//! `pmxcfs-replay wire`: a packet capture plus the authkey in, one CPG event
//! capture per node out, and the comparison with the nodes' own recordings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use pmxcfs_wire::capture::{Event, EventKind};

use crate::capture::{read_capture, write_capture, CaptureError, Record};
use crate::knet::views::ViewEvent;
use crate::knet::Decoded;

/// A human-readable summary of what the decoder found.
pub fn report(d: &Decoded) -> String {
    let mut s = String::new();
    let r = &d.read;
    let t = &d.totem.stats;
    let _ = writeln!(
        s,
        "capture: {} frames, {} UDP datagrams on the knet ports, {} other, {} unknown link type, {} malformed{}",
        r.frames,
        r.udp_on_ports,
        r.foreign,
        r.unknown_link_type,
        r.malformed,
        if r.truncated { ", file truncated" } else { "" }
    );
    let crypto: Vec<String> = t.crypto.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
    let _ = writeln!(
        s,
        "knet: {} authenticated ({}), {} failed authentication, {} data, {} link-level, {} unknown; {} reassembled from fragments, {} unfinished, {} compressed",
        t.authenticated,
        crypto.join(", "),
        t.failed_auth,
        t.knet_data,
        t.knet_link,
        t.knet_unknown,
        t.reassembled,
        t.fragments_unfinished,
        t.compressed
    );
    for e in &t.decompress_errors {
        let _ = writeln!(s, "knet: decompression failed: {e}");
    }
    let _ = writeln!(
        s,
        "totem: {} mcast copies, {} duplicates removed, {} recovery copies, {} not totem, {} not delivered by survivors",
        t.mcast_copies, t.duplicate_mcasts, t.recovery_copies, t.not_totem, t.not_delivered
    );
    for ring in &d.totem.rings {
        let Some(id) = ring.id else { continue };
        let first = ring.mcasts.keys().next().copied().unwrap_or(0);
        let last = ring.mcasts.keys().next_back().copied().unwrap_or(0);
        let missing = ring.missing();
        let members = ring.members();
        let origin = match &ring.commit {
            None => " (no commit token seen)".to_string(),
            Some(c) => {
                let from: Vec<String> = c
                    .members
                    .iter()
                    .map(|m| format!("{} from {} aru {}", m.nodeid, m.old_ring, m.aru))
                    .collect();
                format!(" ({})", from.join(", "))
            }
        };
        let _ = writeln!(
            s,
            "ring {id}: members {:?}{} mcasts={} seq={first}..{last} missing={}{} tokens={} rtr_entries={} recovery={}",
            members,
            origin,
            ring.mcasts.len(),
            missing.len(),
            if missing.is_empty() { String::new() } else { format!(" {:?}", &missing[..missing.len().min(20)]) },
            ring.tokens,
            ring.retransmit_requests,
            ring.recovery_seqs.len()
        );
        if members.len() == 1 {
            let _ = writeln!(
                s,
                "ring {id}: node {} was alone; its private deliveries in this ring cannot be known from the wire",
                members[0]
            );
        }
    }
    for m in d.views.messages.iter().filter(|m| !m.delivered) {
        let _ = writeln!(
            s,
            "NOT DELIVERED: ring {} seq {} from node {}: {:?}",
            m.ring,
            m.seq,
            m.sender,
            short(&m.message)
        );
    }
    if d.views.totempg_orphans + d.views.totempg_unfinished > 0 {
        let _ = writeln!(
            s,
            "totempg: {} pieces without their head, {} messages unfinished at the end",
            d.views.totempg_orphans, d.views.totempg_unfinished
        );
    }
    for (node, events) in &d.views.per_node {
        let (delivers, confchgs, synthetic) = counts(events);
        let _ = writeln!(
            s,
            "node{node}: {delivers} DELIVER, {confchgs} CONFCHG{}",
            if synthetic > 0 {
                format!(" ({synthetic} synthesized: the node was alone in a ring the capture does not show)")
            } else {
                String::new()
            }
        );
    }
    s
}

/// A node's DELIVERs, CONFCHGs, and how many of them were synthesized.
fn counts(events: &[ViewEvent]) -> (usize, usize, usize) {
    let delivers = events
        .iter()
        .filter(|e| e.event.kind == EventKind::Deliver)
        .count();
    let synthetic = events.iter().filter(|e| e.synthetic).count();
    (delivers, events.len() - delivers, synthetic)
}

fn short(m: &crate::knet::totempg::ServiceMessage) -> String {
    let d = format!("{m:?}");
    d.chars().take(120).collect()
}

fn record(e: &ViewEvent) -> Record {
    let sec = e.time.floor();
    Record::from_event(sec as u32, ((e.time - sec) * 1e6) as u32, &e.event)
}

/// Writes `nodeN.pcap` per node into `dir`.
pub fn write_views(d: &Decoded, dir: &Path) -> Result<Vec<String>, CaptureError> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (node, events) in &d.views.per_node {
        let name = format!("node{node}.pcap");
        let records: Vec<Record> = events.iter().map(record).collect();
        write_capture(&dir.join(&name), &records)?;
        written.push(name);
    }
    Ok(written)
}

/// The comparison of one node's view with its recording.
#[derive(Default, Debug)]
pub struct NodeComparison {
    pub node: u32,
    pub delivers_matched: usize,
    pub delivers_expected: usize,
    pub confchgs_matched: usize,
    pub confchgs_expected: usize,
    /// Only in the decoder's view: the node's own final leave (allowed).
    pub own_leaves: Vec<String>,
    /// Differences that count.
    pub differences: Vec<String>,
}

impl NodeComparison {
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
            && self.delivers_matched == self.delivers_expected
            && self.confchgs_matched == self.confchgs_expected
    }
}

fn same(a: &Event, b: &Event) -> bool {
    a.kind == b.kind
        && a.local_nodeid == b.local_nodeid
        && a.local_pid == b.local_pid
        && a.group == b.group
        && a.body == b.body
}

pub fn describe(e: &Event) -> String {
    crate::describe::event_summary(e)
}

/// Compares, per node and per group, the decoded DELIVER/CONFCHG streams
/// with those of `dir/nodeN.pcap`.
pub fn compare(d: &Decoded, dir: &Path) -> Result<Vec<NodeComparison>, String> {
    let mut expected_nodes: BTreeMap<u32, Vec<Event>> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = name
            .strip_prefix("node")
            .and_then(|r| r.strip_suffix(".pcap"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let records = read_capture(&entry.path()).map_err(|e| format!("{name}: {e}"))?;
        let mut events = Vec::new();
        for r in records {
            let e = r.event().map_err(|e| format!("{name}: {e}"))?;
            if matches!(e.kind, EventKind::Deliver | EventKind::Confchg) {
                events.push(e);
            }
        }
        expected_nodes.insert(n, events);
    }
    if expected_nodes.is_empty() {
        return Err(format!("{}: no nodeN.pcap recordings", dir.display()));
    }
    let mut out = Vec::new();
    let nodes: BTreeSet<u32> = expected_nodes
        .keys()
        .copied()
        .chain(d.views.per_node.keys().copied())
        .collect();
    let empty = Vec::new();
    for node in nodes {
        let expected = expected_nodes.get(&node).unwrap_or(&empty);
        let view: &[ViewEvent] = d
            .views
            .per_node
            .get(&node)
            .map(|v| v.as_slice())
            .unwrap_or(&[]);
        let mut cmp = NodeComparison {
            node,
            ..Default::default()
        };
        let groups: BTreeSet<Vec<u8>> = expected
            .iter()
            .map(|e| e.group.clone())
            .chain(view.iter().map(|v| v.event.group.clone()))
            .collect();
        for group in groups {
            let exp: Vec<&Event> = expected.iter().filter(|e| e.group == group).collect();
            let emu: Vec<&ViewEvent> = view.iter().filter(|v| v.event.group == group).collect();
            compare_stream(&exp, &emu, &mut cmp);
        }
        cmp.delivers_expected = expected
            .iter()
            .filter(|e| e.kind == EventKind::Deliver)
            .count();
        cmp.confchgs_expected = expected.len() - cmp.delivers_expected;
        out.push(cmp);
    }
    Ok(out)
}

fn compare_stream(exp: &[&Event], emu: &[&ViewEvent], cmp: &mut NodeComparison) {
    let (mut i, mut j) = (0, 0);
    while i < exp.len() || j < emu.len() {
        if i < exp.len() && j < emu.len() && same(exp[i], &emu[j].event) {
            match exp[i].kind {
                EventKind::Deliver => cmp.delivers_matched += 1,
                _ => cmp.confchgs_matched += 1,
            }
            i += 1;
            j += 1;
            continue;
        }
        if j < emu.len() && emu[j].own_leave {
            cmp.own_leaves.push(describe(&emu[j].event));
            j += 1;
            continue;
        }
        // Resynchronise: is the recorded event a little further on in the
        // decoder's view (extra events), or missing from it?
        let ahead = if i < exp.len() {
            emu[j..]
                .iter()
                .take(64)
                .position(|v| same(exp[i], &v.event))
        } else {
            None
        };
        match ahead {
            Some(k) => {
                for v in &emu[j..j + k] {
                    if v.own_leave {
                        cmp.own_leaves.push(describe(&v.event));
                    } else {
                        cmp.differences.push(format!(
                            "only in the decoder's view: {}",
                            describe(&v.event)
                        ));
                    }
                }
                j += k;
            }
            None if i < exp.len() => {
                cmp.differences
                    .push(format!("only in the recording: {}", describe(exp[i])));
                i += 1;
            }
            None => {
                cmp.differences.push(format!(
                    "only in the decoder's view: {}",
                    describe(&emu[j].event)
                ));
                j += 1;
            }
        }
    }
}

/// What [`report`] says, and the comparison with `--expect` when there is
/// one, as one JSON object (`pmxcfs-replay wire --json`).
pub fn json(d: &Decoded, comparisons: Option<&[NodeComparison]>) -> serde_json::Value {
    use serde_json::json;
    let r = &d.read;
    let t = &d.totem.stats;
    let rings: Vec<serde_json::Value> = d
        .totem
        .rings
        .iter()
        .filter_map(|ring| {
            let id = ring.id?;
            Some(json!({
                "ring": id.to_string(),
                "members": ring.members(),
                "commit_token_seen": ring.commit.is_some(),
                "mcasts": ring.mcasts.len(),
                "first_seq": ring.mcasts.keys().next().copied().unwrap_or(0),
                "last_seq": ring.mcasts.keys().next_back().copied().unwrap_or(0),
                "missing": ring.missing().len(),
                "tokens": ring.tokens,
                "retransmit_requests": ring.retransmit_requests,
                "recovery_seqs": ring.recovery_seqs.len(),
            }))
        })
        .collect();
    let nodes: Vec<serde_json::Value> = d
        .views
        .per_node
        .iter()
        .map(|(node, events)| {
            let (delivers, confchgs, synthesized) = counts(events);
            json!({
                "node": node,
                "delivers": delivers,
                "confchgs": confchgs,
                "synthesized": synthesized,
            })
        })
        .collect();
    let mut out = json!({
        "capture": {
            "frames": r.frames, "udp_on_knet_ports": r.udp_on_ports, "other": r.foreign,
            "unknown_link_type": r.unknown_link_type, "malformed": r.malformed, "truncated": r.truncated,
        },
        "knet": {
            "authenticated": t.authenticated, "failed_authentication": t.failed_auth,
            "data": t.knet_data, "link_level": t.knet_link, "unknown": t.knet_unknown,
            "reassembled": t.reassembled, "fragments_unfinished": t.fragments_unfinished,
            "compressed": t.compressed, "decompression_errors": t.decompress_errors,
        },
        "totem": {
            "mcast_copies": t.mcast_copies, "duplicates_removed": t.duplicate_mcasts,
            "recovery_copies": t.recovery_copies, "not_totem": t.not_totem,
            "not_delivered_by_survivors": t.not_delivered,
        },
        "rings": rings,
        "not_delivered": d.views.messages.iter().filter(|m| !m.delivered).count(),
        "totempg_orphans": d.views.totempg_orphans,
        "totempg_unfinished": d.views.totempg_unfinished,
        "nodes": nodes,
    });
    if let Some(cs) = comparisons {
        let list: Vec<serde_json::Value> = cs
            .iter()
            .map(|c| {
                json!({
                    "node": c.node,
                    "delivers_matched": c.delivers_matched, "delivers_expected": c.delivers_expected,
                    "confchgs_matched": c.confchgs_matched, "confchgs_expected": c.confchgs_expected,
                    "own_final_leaves": c.own_leaves, "differences": c.differences, "ok": c.ok(),
                })
            })
            .collect();
        out["expect"] = json!({ "nodes": list, "ok": cs.iter().all(NodeComparison::ok) });
    }
    out
}
