//! `pmxcfs-replay check`: the core, fed what each recorded C node saw,
//! sends the same bytes and ends with the same database; and a scenario
//! that differs anywhere is reported as differing.

use std::path::{Path, PathBuf};
use std::process::Command;

use pmxcfs_compat::capture::{read_capture, write_capture, EventBody, EventKind};
use pmxcfs_compat::check::{check_scenario, unsanitize};
use pmxcfs_compat::describe::{group_of, NodeGroup};
use pmxcfs_wire::Codec;

fn captures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../captures")
}

fn scenarios() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(captures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    assert!(v.len() >= 4);
    v
}

#[test]
fn every_recorded_node_is_reproduced() {
    for dir in scenarios() {
        let reports = check_scenario(&dir).unwrap();
        assert_eq!(reports.len(), 3, "{}", dir.display());
        for r in reports {
            assert!(r.ok(), "{}/{}: {:?}", dir.display(), r.node, r.problems);
            assert!(r.sends_total > 5);
            assert_eq!(r.sends_matched, r.sends_total);
            assert!(r.final_state_matched);
        }
    }
}

#[test]
fn check_command_contract() {
    let out = Command::new(env!("CARGO_BIN_EXE_pmxcfs-replay"))
        .arg("check")
        .args(scenarios())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap();
    let n = scenarios().len();
    assert!(
        last.starts_with(&format!(
            "scenarios: {n}, nodes: {}, sends matched: ",
            3 * n
        )),
        "{last}"
    );
    let counts = last
        .split("sends matched: ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    let (k, m) = counts.split_once('/').unwrap();
    assert_eq!(k, m);
    assert!(
        last.ends_with(&format!("final state matched: {}/{}", 3 * n, 3 * n)),
        "{last}"
    );
    assert_eq!(
        stdout.lines().count(),
        3 * n + 1,
        "one line per node and the totals"
    );

    // --json: one object with the same totals, a node entry per line above.
    let out = Command::new(env!("CARGO_BIN_EXE_pmxcfs-replay"))
        .args(["check", "--json"])
        .args(scenarios())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["ok"], true);
    assert_eq!(v["totals"]["nodes"], 3 * n);
    assert_eq!(v["totals"]["final_states_matched"], 3 * n);
    assert_eq!(v["totals"]["sends_matched"], v["totals"]["sends_total"]);
    assert_eq!(v["scenarios"].as_array().unwrap().len(), n);
    assert!(
        v["scenarios"][0]["nodes"][0]["sends_total"]
            .as_u64()
            .unwrap()
            > 0
    );
}

/// Copy a scenario folder to a scratch place.
fn copy_scenario(name: &str, tag: &str) -> PathBuf {
    let src = captures().join(name);
    let dst = std::env::temp_dir().join(format!("pmxcfs-check-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(dst.join("expected")).unwrap();
    for f in ["node1.pcap", "node2.pcap", "node3.pcap", "corosync.conf"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    for e in std::fs::read_dir(src.join("expected")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join("expected").join(e.file_name())).unwrap();
    }
    dst
}

#[test]
fn a_changed_final_database_is_reported() {
    let dir = copy_scenario("s1-formation-and-writes", "db");
    let sql = dir.join("expected/node2.config.sql");
    let text = std::fs::read_to_string(&sql).unwrap();
    std::fs::write(&sql, text.replace("'datacenter.cfg'", "'datacenter.cfx'")).unwrap();
    let reports = check_scenario(&dir).unwrap();
    assert!(reports[0].ok());
    assert!(!reports[1].final_state_matched);
    assert_eq!(reports[1].sends_matched, reports[1].sends_total);
    let out = Command::new(env!("CARGO_BIN_EXE_pmxcfs-replay"))
        .arg("check")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("final state matched: 2/3"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_changed_autonomous_send_is_reported() {
    // Change one STATE node1 recorded sending: the core still sends the
    // real one, which then no longer matches.
    let dir = copy_scenario("s1-formation-and-writes", "send");
    let path = dir.join("node1.pcap");
    let mut records = read_capture(&path).unwrap();
    let i = records
        .iter()
        .position(|r| {
            let e = r.event().unwrap();
            e.kind == EventKind::Mcast
                && group_of(&e.group) == Some(NodeGroup::Dcdb)
                && e.message().unwrap()[0] == 2
        })
        .unwrap();
    let mut e = records[i].event().unwrap();
    if let EventBody::Mcast { msg, .. } = &mut e.body {
        let last = msg.len() - 1;
        msg[last] ^= 0xff;
    }
    records[i].data = e.to_bytes();
    write_capture(&path, &records).unwrap();
    let reports = check_scenario(&dir).unwrap();
    assert!(reports[0].sends_matched < reports[0].sends_total);
    assert!(
        reports[0]
            .problems
            .iter()
            .any(|p| p.contains("where C sent STATE")),
        "{:?}",
        reports[0].problems
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_local_request_takes_its_time_from_its_own_header() {
    // The recorder stamps an MCAST a moment after C read the clock for its
    // header; across a second boundary the record is a second later. Such
    // records (every NORMAL a node sent, here) still replay exactly.
    let dir = copy_scenario("s1-formation-and-writes", "late");
    let mut moved = 0;
    for node in ["node1.pcap", "node2.pcap", "node3.pcap"] {
        let path = dir.join(node);
        let mut records = read_capture(&path).unwrap();
        for r in records.iter_mut() {
            let e = r.event().unwrap();
            let normal = e.kind == EventKind::Mcast
                && group_of(&e.group) != None
                && e.message().is_some_and(|m| m[0] == 0 && m[1] == 0);
            if normal {
                r.ts_sec += 1;
                moved += 1;
            }
        }
        write_capture(&path, &records).unwrap();
    }
    assert!(moved > 10, "{moved}");
    for r in check_scenario(&dir).unwrap() {
        assert!(r.ok(), "{}: {:?}", r.node, r.problems);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unsanitize_round_trips_through_the_sanitiser() {
    use pmxcfs_wire::clog::utf8_to_ascii;
    for original in [
        &b"backup of \"vm100\" finished\nwith \xc3\xbcmlauts"[..],
        b"literal #010 and \\u00e4 and \\\" stay",
        b"tab\there",
        b"plain",
    ] {
        let once = utf8_to_ascii(original, 4096, true);
        let again = utf8_to_ascii(&unsanitize(&once), 4096, true);
        assert_eq!(again, once, "{}", String::from_utf8_lossy(original));
    }
}
