//! Every message of every recorded scenario in `captures/` decodes and
//! re-encodes byte for byte; every event record and every capture file too.

use std::path::{Path, PathBuf};
use std::process::Command;

use pmxcfs_compat::capture::{read_capture, write_capture, Event, EventBody, EventKind};
use pmxcfs_compat::decode::{check_message, Outcome};
use pmxcfs_compat::describe::{group_of, Decoded, NodeGroup};
use pmxcfs_wire::{dcdb, kvstore, Codec};

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../captures")
}

fn capture_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(captures_dir()).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("node") && name.ends_with(".pcap") {
                files.push(f);
            }
        }
    }
    files.sort();
    assert!(
        files.len() >= 12,
        "expected the recorded scenarios, found {files:?}"
    );
    files
}

#[test]
fn every_recorded_message_round_trips_byte_exact() {
    let mut messages = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for file in capture_files() {
        for (i, record) in read_capture(&file).unwrap().iter().enumerate() {
            let event = record
                .event()
                .unwrap_or_else(|e| panic!("{}:{i}: {e}", file.display()));
            assert_eq!(
                event.to_bytes(),
                record.data,
                "{}:{i}: event record",
                file.display()
            );
            let Some(msg) = event.message() else { continue };
            messages += 1;
            let group = group_of(&event.group);
            assert_ne!(group, None, "{}:{i}: unexpected group", file.display());
            match check_message(group, msg) {
                Outcome::Exact(d) => {
                    let group = group.expect("checked above");
                    kinds.insert(format!("{group:?}/{}", d.kind_name()));
                }
                other => panic!("{}:{i}: {other:?}", file.display()),
            }
        }
    }
    assert!(messages > 1000);
    // The recordings cover every message kind pmxcfs sends.
    for k in [
        "Dcdb/NORMAL/WRITE",
        "Dcdb/NORMAL/MKDIR",
        "Dcdb/NORMAL/DELETE",
        "Dcdb/NORMAL/RENAME",
        "Dcdb/NORMAL/CREATE",
        "Dcdb/NORMAL/MTIME",
        "Dcdb/NORMAL/UNLOCK_REQUEST",
        "Dcdb/NORMAL/UNLOCK",
        "Dcdb/SYNC_START",
        "Dcdb/STATE",
        "Dcdb/UPDATE",
        "Dcdb/UPDATE_COMPLETE",
        "Dcdb/VERIFY_REQUEST",
        "Dcdb/VERIFY",
        "Kvstore/NORMAL/UPDATE",
        "Kvstore/NORMAL/LOG",
        "Kvstore/SYNC_START",
        "Kvstore/STATE",
    ] {
        assert!(kinds.contains(k), "no {k} in the captures: {kinds:?}");
    }
}

/// Every DELIVER is byte-identical to the MCAST its sender recorded, and
/// every node of a scenario saw each group's deliveries in the same order.
#[test]
fn deliveries_match_the_senders_mcasts() {
    let mut dirs: Vec<PathBuf> = capture_files()
        .iter()
        .map(|f| f.parent().unwrap().to_path_buf())
        .collect();
    dirs.dedup();
    for dir in dirs {
        let mut sent = std::collections::HashMap::<(u32, u32, Vec<u8>), Vec<Vec<u8>>>::new();
        let mut delivered = Vec::new();
        for file in capture_files()
            .iter()
            .filter(|f| f.parent() == Some(dir.as_path()))
        {
            for record in read_capture(file).unwrap() {
                let e = record.event().unwrap();
                match &e.body {
                    EventBody::Mcast { msg, result, .. } if *result == 1 => {
                        sent.entry((e.local_nodeid, e.local_pid, e.group.clone()))
                            .or_default()
                            .push(msg.clone());
                    }
                    EventBody::Deliver {
                        sender_nodeid,
                        sender_pid,
                        msg,
                    } => {
                        delivered
                            .push(((*sender_nodeid, *sender_pid, e.group.clone()), msg.clone()));
                    }
                    _ => {}
                }
            }
        }
        assert!(!delivered.is_empty());
        for (key, msg) in delivered {
            let sends = sent
                .get(&key)
                .unwrap_or_else(|| panic!("{}: no sends from {key:?}", dir.display()));
            assert!(
                sends.contains(&msg),
                "{}: a delivery from {key:?} was never sent",
                dir.display()
            );
        }
    }
}

#[test]
fn capture_files_are_rewritten_identically() {
    let dir = std::env::temp_dir().join(format!("pmxcfs-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in capture_files() {
        let records = read_capture(&file).unwrap();
        let out = dir.join("copy.pcap");
        write_capture(&out, &records).unwrap();
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&file).unwrap(),
            "{}",
            file.display()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Decoded content matches what the scenario notes say was done.
#[test]
fn decoded_content_is_meaningful() {
    let file = captures_dir().join("s1-formation-and-writes/node1.pcap");
    let records = read_capture(&file).unwrap();
    let events: Vec<Event> = records.iter().map(|r| r.event().unwrap()).collect();
    assert_eq!(events[0].kind, EventKind::Quorum);
    let mut paths = Vec::new();
    let mut nodeips = Vec::new();
    for e in &events {
        let (EventKind::Mcast, Some(msg)) = (e.kind, e.message()) else {
            continue;
        };
        match Decoded::decode(group_of(&e.group), msg).unwrap() {
            Decoded::Dcdb(dcdb::Message {
                payload: dcdb::Payload::Fuse(f),
                ..
            }) => {
                paths.push(f.path_lossy().unwrap_or_default());
            }
            Decoded::Kvstore(kvstore::Message {
                payload: kvstore::Payload::Update(u),
                ..
            }) => {
                if u.key() == b"nodeip" {
                    nodeips.push(u.value.clone());
                }
            }
            _ => {}
        }
    }
    assert!(
        paths.contains(&"nodes/capnode1/qemu-server/100.conf".to_string()),
        "{paths:?}"
    );
    assert!(paths.contains(&"priv/lock/foo".to_string()), "{paths:?}");
    assert!(nodeips.iter().all(|v| v == b"10.77.0.1\0"), "{nodeips:?}");
}

fn replay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pmxcfs-replay"))
}

#[test]
fn decode_command_reports_every_message_byte_exact() {
    let files = capture_files();
    let out = replay().arg("decode").args(&files).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let last = lines.last().unwrap();
    let numbers: Vec<usize> = last
        .split(", ")
        .map(|part| part.rsplit(": ").next().unwrap().parse().unwrap())
        .collect();
    assert!(last.starts_with("events: "), "{last}");
    let (events, messages, exact, undecodable) = (numbers[0], numbers[1], numbers[2], numbers[3]);
    assert_eq!(lines.len() - 1, events, "one line per event");
    assert_eq!(exact, messages);
    assert_eq!(undecodable, 0);
    assert_eq!(
        last,
        &format!("events: {events}, messages: {messages}, byte-exact: {exact}, undecodable: 0")
    );

    // --json: one object per line, the last one the totals.
    let out = replay()
        .args(["decode", "--json"])
        .arg(&files[0])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let values: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let totals = values.last().unwrap();
    assert_eq!(totals["byte_exact"], totals["messages"]);
    assert!(values[..values.len() - 1]
        .iter()
        .all(|v| v["kind"].is_string()));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .starts_with("events: "));
}

#[test]
fn decode_command_fails_on_damaged_input() {
    let dir = std::env::temp_dir().join(format!("pmxcfs-damaged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let original = capture_files()[0].clone();
    let mut records = read_capture(&original).unwrap();
    // A DELIVER whose dcdb payload lost its last byte: undecodable.
    let i = records
        .iter()
        .position(|r| {
            let e = r.event().unwrap();
            e.kind == EventKind::Deliver && group_of(&e.group) == Some(NodeGroup::Dcdb)
        })
        .unwrap();
    let mut e = records[i].event().unwrap();
    if let EventBody::Deliver { msg, .. } = &mut e.body {
        msg.truncate(msg.len() - 1);
    }
    records[i].data = e.to_bytes();
    let damaged = dir.join("node1.pcap");
    write_capture(&damaged, &records).unwrap();
    let out = replay().arg("decode").arg(&damaged).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.lines().last().unwrap().ends_with("undecodable: 1"),
        "{stdout}"
    );
    assert!(stdout.contains("UNDECODABLE"));

    // A file cut in the middle of a record: what was read is decoded, the
    // damage is reported.
    let bytes = std::fs::read(&original).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let out = replay().arg("decode").arg(&cut).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("capture damaged"), "{stdout}");

    // Not a capture at all.
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"not a pcap").unwrap();
    let out = replay().arg("decode").arg(&junk).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap"));
    std::fs::remove_dir_all(&dir).unwrap();
}
