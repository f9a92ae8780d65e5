//! The Wireshark dissector (`wireshark/pmxcfs.lua`) with the real tshark:
//! every capture of `captures/` and the decrypted wire capture w1 must be
//! dissected into exactly the fields `pmxcfs-replay decode --json` reports
//! for the same messages, with no malformed packet and no Lua error; the
//! fuzz seeds of the decoders, and mutations of them, must not make it
//! fail with a Lua error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pmxcfs_compat::knet::forge;
use pmxcfs_compat::knet::totem::RingId;
use pmxcfs_wire::capture::{pcap_file_header, pcap_record, Event, EventBody, EventKind};
use pmxcfs_wire::Codec;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn lua() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wireshark/pmxcfs.lua")
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pmxcfs-wireshark-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// tshark's JSON of a file, every packet dissected with our script.
fn tshark_json(file: &Path) -> Vec<Value> {
    let out = Command::new("tshark")
        .arg("-X")
        .arg(format!("lua_script:{}", lua().display()))
        .arg("-r")
        .arg(file)
        .args(["-T", "json", "--no-duplicate-keys"])
        .output()
        .expect("tshark (Debian package tshark; scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "tshark on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Lua Error"),
        "{}: a Lua error:\n{}",
        file.display(),
        text.lines()
            .filter(|l| l.contains("Lua Error"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    serde_json::from_str(&text).unwrap()
}

/// Every `field → values` of a layer, subtrees included, in order.
fn flatten(v: &Value, out: &mut BTreeMap<String, Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::String(s) => out.entry(k.clone()).or_default().push(s.clone()),
                    Value::Array(items) if items.iter().all(Value::is_string) => {
                        for i in items {
                            out.entry(k.clone())
                                .or_default()
                                .push(i.as_str().unwrap().to_string());
                        }
                    }
                    other => flatten(other, out),
                }
            }
        }
        Value::Array(items) => {
            for i in items {
                flatten(i, out);
            }
        }
        _ => {}
    }
}

/// The layers of one protocol in a packet (one object, or several).
fn layers<'a>(packet: &'a Value, proto: &str) -> Vec<&'a Value> {
    match &packet["_source"]["layers"][proto] {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().collect(),
        v => vec![v],
    }
}

/// No malformed packet, no error-level expert information.
fn assert_clean(packets: &[Value], file: &Path) {
    for (i, p) in packets.iter().enumerate() {
        let mut all = BTreeMap::new();
        flatten(&p["_source"]["layers"], &mut all);
        assert!(
            !all.contains_key("_ws.malformed"),
            "{} frame {}: malformed",
            file.display(),
            i + 1
        );
        if let Some(sev) = all.get("_ws.expert.severity") {
            // PI_ERROR = 0x00800000
            assert!(
                !sev.iter().any(|s| s == "8388608"),
                "{} frame {}: an error: {:?}",
                file.display(),
                i + 1,
                all.get("_ws.expert.message")
            );
        }
    }
}

/// The preview `decode --json` gives binary data and long values.
fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 48;
    let mut s = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).into_owned();
    if bytes.len() > MAX {
        s.push('…');
    }
    s
}

fn unhex(s: &str) -> Vec<u8> {
    let h: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..h.len() / 2)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks a dissected pmxcfs message against `decode --json`'s `message`
/// object; the differences, if any.
fn compare_message(group: &str, want: &Value, got: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut diffs = Vec::new();
    let one = |f: &str| got.get(f).and_then(|v| v.first()).cloned();
    let kind = want["type"].as_str().unwrap_or("").to_string();
    let mut check = |key: &str, field: &str, expected: String, got_value: Option<String>| {
        if got_value.as_deref() != Some(expected.as_str()) {
            diffs.push(format!(
                "{kind} {key}: decode says {expected:?}, {field} is {got_value:?}"
            ));
        }
    };
    let Value::Object(m) = want else {
        return vec!["no message object".into()];
    };
    let dcdb = group == "pve_dcdb_v1";
    let fuse = dcdb
        && kind.starts_with("NORMAL/")
        && !kind.contains("UNLOCK")
        && !kind.contains("UNKNOWN");
    for (key, value) in m {
        let w = text(value);
        match key.as_str() {
            "type" => check(key, "pmxcfs.kind", w, one("pmxcfs.kind")),
            "protocol_version" | "time" | "count" => {
                let f = format!("pmxcfs.{key}");
                check(key, &f.clone(), w, one(&f))
            }
            "epoch" => {
                for part in ["epoch", "time", "nodeid", "pid"] {
                    let f = format!("pmxcfs.epoch.{part}");
                    check(key, &f.clone(), text(&value[part]), one(&f));
                }
            }
            "payload_len" => check(key, "pmxcfs.payload_len", w, one("pmxcfs.payload_len")),
            "path" | "to" | "offset" | "flags" if dcdb => {
                let f = format!("pmxcfs.dcdb.{key}");
                check(key, &f.clone(), w, one(&f))
            }
            "size" if fuse => check(key, "pmxcfs.dcdb.size", w, one("pmxcfs.dcdb.size")),
            "data" if fuse => {
                let bytes = one("pmxcfs.dcdb.data").map(|h| preview(&unhex(&h)));
                check(key, "pmxcfs.dcdb.data", w, bytes)
            }
            "csum" if dcdb && kind.contains("UNLOCK") => {
                let h = one("pmxcfs.dcdb.csum").map(|h| h.replace(':', ""));
                check(key, "pmxcfs.dcdb.csum", w, h)
            }
            "csum" if dcdb => {
                let h = one("pmxcfs.verify.csum").map(|h| h.replace(':', ""));
                check(key, "pmxcfs.verify.csum", w, h)
            }
            "id" if dcdb => check(key, "pmxcfs.verify.id", w, one("pmxcfs.verify.id")),
            "version" | "last_inode" | "writer" | "mtime" | "entries"
                if dcdb && kind == "STATE" =>
            {
                let f = format!("pmxcfs.dcdb.index.{key}");
                check(key, &f.clone(), w, one(&f))
            }
            "size_field" if dcdb => check(
                key,
                "pmxcfs.dcdb.index.size",
                w,
                one("pmxcfs.dcdb.index.size"),
            ),
            "remainder" if dcdb => check(
                key,
                "pmxcfs.dcdb.index.remainder",
                w,
                one("pmxcfs.dcdb.index.remainder"),
            ),
            "inode" | "parent" | "version" | "writer" | "mtime" | "name" | "size"
                if dcdb && kind == "UPDATE" =>
            {
                let f = format!("pmxcfs.dcdb.entry.{key}");
                check(key, &f.clone(), w, one(&f))
            }
            "entry_type" if dcdb => {
                let t = one("pmxcfs.dcdb.entry.type").map(|t| {
                    match t.as_str() {
                        "4" => "dir",
                        "8" => "reg",
                        other => other,
                    }
                    .to_string()
                });
                check(key, "pmxcfs.dcdb.entry.type", w, t)
            }
            "key" => check(key, "pmxcfs.kvstore.key", w, one("pmxcfs.kvstore.key")),
            "value_len" => check(
                key,
                "pmxcfs.kvstore.value_len",
                w,
                one("pmxcfs.kvstore.value_len"),
            ),
            "value" => {
                let v = one("pmxcfs.kvstore.value").map(|v| preview(v.as_bytes()));
                check(key, "pmxcfs.kvstore.value", w, v)
            }
            "uid" | "node" | "ident" | "tag" | "pid" | "msg" => {
                let f = format!("pmxcfs.clog.{key}");
                check(key, &f.clone(), w, one(&f))
            }
            "log_time" => check(key, "pmxcfs.clog.time", w, one("pmxcfs.clog.time")),
            "pri" => check(key, "pmxcfs.clog.priority", w, one("pmxcfs.clog.priority")),
            "size" | "cpos" | "entries" if !dcdb && kind == "STATE" => {
                let f = format!("pmxcfs.clog.{key}");
                check(key, &f.clone(), w, one(&f))
            }
            other => check(other, "(none)", "a dissector field".into(), None),
        }
    }
    diffs
}

/// Every capture of captures/: record by record, the dissector's fields
/// are decode --json's.
#[test]
fn every_recorded_capture_dissects_as_decode_reports() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("captures"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).into_iter().flatten())
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "pcap")
                && p.file_name().unwrap().to_string_lossy().starts_with("node")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 15);
    let mut messages = 0;
    let mut copies = 0;
    for file in &files {
        let decoded = Command::new(env!("CARGO_BIN_EXE_pmxcfs-replay"))
            .args(["decode", "--json"])
            .arg(file)
            .output()
            .unwrap();
        assert!(decoded.status.success());
        let events: Vec<Value> = String::from_utf8_lossy(&decoded.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|v: &Value| v.get("kind").is_some())
            .collect();
        // Wireshark refuses records over 256 KiB: open such a file
        // through the copy pmxcfs-replay makes for it.
        let biggest = pmxcfs_compat::capture::read_capture(file)
            .unwrap()
            .iter()
            .map(|r| r.data.len())
            .max()
            .unwrap_or(0);
        let opened = if biggest > pmxcfs_compat::capture::WIRESHARK_MAX_RECORD {
            let copy = std::env::temp_dir().join(format!(
                "pmxcfs-wireshark-copy-{}-{}.pcap",
                std::process::id(),
                file.file_stem().unwrap().to_string_lossy()
            ));
            let out = Command::new(env!("CARGO_BIN_EXE_pmxcfs-replay"))
                .arg("for-wireshark")
                .arg(file)
                .arg(&copy)
                .output()
                .unwrap();
            assert!(out.status.success());
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.starts_with("records: ") && !text.contains("cut: 0"),
                "{text}"
            );
            copies += 1;
            copy
        } else {
            file.clone()
        };
        let packets = tshark_json(&opened);
        if opened != *file {
            std::fs::remove_file(&opened).unwrap();
        }
        assert_clean(&packets, file);
        assert_eq!(packets.len(), events.len(), "{}", file.display());
        for (i, (p, e)) in packets.iter().zip(&events).enumerate() {
            let where_ = format!("{} frame {}", file.display(), i + 1);
            let rec = layers(p, "pmxcfs_capture");
            assert_eq!(rec.len(), 1, "{where_}");
            let mut f = BTreeMap::new();
            flatten(rec[0], &mut f);
            let one = |k: &str| {
                f.get(k)
                    .and_then(|v| v.first())
                    .cloned()
                    .unwrap_or_default()
            };
            let kind = match one("pmxcfs_capture.kind").as_str() {
                "1" => "DELIVER",
                "2" => "CONFCHG",
                "3" => "MCAST",
                "4" => "QUORUM",
                other => panic!("{where_}: kind {other}"),
            };
            assert_eq!(kind, e["kind"], "{where_}");
            for k in [
                "local_nodeid",
                "local_pid",
                "group",
                "sender_nodeid",
                "sender_pid",
                "msg_len",
                "guarantee",
                "quorate",
                "ring_seq",
            ] {
                if let Some(v) = e.get(k) {
                    assert_eq!(
                        one(&format!("pmxcfs_capture.{k}")),
                        text(v),
                        "{where_}: {k}"
                    );
                }
            }
            if let Some(r) = e.get("result") {
                let n = match r.as_str().unwrap() {
                    "CS_OK" => "1".to_string(),
                    "CS_ERR_TRY_AGAIN" => "6".to_string(),
                    s => s
                        .trim_start_matches("cs_error(")
                        .trim_end_matches(')')
                        .to_string(),
                };
                assert_eq!(one("pmxcfs_capture.result"), n, "{where_}");
            }
            if kind == "CONFCHG" {
                let mut nodeids = Vec::new();
                let mut pids = Vec::new();
                for list in ["members", "left", "joined"] {
                    for a in e[list].as_array().unwrap() {
                        nodeids.push(text(&a["nodeid"]));
                        pids.push(text(&a["pid"]));
                    }
                }
                assert_eq!(
                    f.get("pmxcfs_capture.nodeid").cloned().unwrap_or_default(),
                    nodeids,
                    "{where_}"
                );
                assert_eq!(
                    f.get("pmxcfs_capture.pid").cloned().unwrap_or_default(),
                    pids,
                    "{where_}"
                );
            }
            if kind == "QUORUM" {
                let nodes: Vec<String> = e["nodes"].as_array().unwrap().iter().map(text).collect();
                assert_eq!(
                    f.get("pmxcfs_capture.node").cloned().unwrap_or_default(),
                    nodes,
                    "{where_}"
                );
            }
            let ts = e["ts"].as_f64().unwrap();
            let t: f64 = p["_source"]["layers"]["frame"]["frame.time_epoch"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((t - ts).abs() < 2e-6, "{where_}: time {t} against {ts}");
            let msgs = layers(p, "pmxcfs");
            match e.get("message") {
                Some(m) => {
                    assert_eq!(msgs.len(), 1, "{where_}");
                    let mut got = BTreeMap::new();
                    flatten(msgs[0], &mut got);
                    let diffs = compare_message(e["group"].as_str().unwrap(), m, &got);
                    assert!(diffs.is_empty(), "{where_}: {diffs:?}");
                    messages += 1;
                }
                None => assert!(msgs.is_empty(), "{where_}"),
            }
        }
    }
    assert!(messages > 1500, "{messages}");
    // w1's 300 KiB file travelled in such records.
    assert!(copies >= 1);
}

/// The decrypted knet capture of a real C cluster: every pmxcfs message
/// any node was handed is dissected, once per multicast, with decode's
/// fields, and nothing else is.
#[test]
fn the_decrypted_w1_capture_dissects_as_decode_reports() {
    let w1 = root().join("captures/w1-encrypted-basic");
    let dir = scratch("w1");
    let dec = dir.join("w1-decrypted.pcapng");
    let views = dir.join("views");
    let out = Command::new(env!("CARGO_BIN_EXE_pmxcfs-replay"))
        .arg("wire")
        .arg("--authkey")
        .arg(w1.join("authkey"))
        .arg("--decrypted-out")
        .arg(&dec)
        .arg("--out")
        .arg(&views)
        .arg(w1.join("wire.pcapng"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("decrypted: 4248 totem messages written"),
        "{report}"
    );
    // What every node was handed, by decode --json of their views.
    let mut expected: BTreeMap<String, (String, Value)> = BTreeMap::new();
    for n in 1..=3 {
        let decoded = Command::new(env!("CARGO_BIN_EXE_pmxcfs-replay"))
            .args(["decode", "--json"])
            .arg(views.join(format!("node{n}.pcap")))
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&decoded.stdout).lines() {
            let e: Value = serde_json::from_str(line).unwrap();
            if e["kind"] != "DELIVER" {
                continue;
            }
            let id = format!(
                "{} {} {} {}",
                e["group"], e["sender_nodeid"], e["sender_pid"], e["message"]
            );
            expected.insert(
                id,
                (
                    e["group"].as_str().unwrap().to_string(),
                    e["message"].clone(),
                ),
            );
        }
    }
    assert!(expected.len() > 100, "{}", expected.len());
    let packets = tshark_json(&dec);
    assert_clean(&packets, &dec);
    assert_eq!(packets.len(), 4248);
    // The dissected messages, once per multicast (no copies).
    let mut dissected: Vec<(String, String, String, BTreeMap<String, Vec<String>>)> = Vec::new();
    for p in &packets {
        let mut t = BTreeMap::new();
        for l in layers(p, "totem") {
            flatten(l, &mut t);
        }
        if t.contains_key("totem.copy_of") {
            continue;
        }
        for m in layers(p, "pmxcfs") {
            let mut f = BTreeMap::new();
            flatten(m, &mut f);
            let one = |k: &str| {
                f.get(k)
                    .and_then(|v| v.first())
                    .cloned()
                    .unwrap_or_default()
            };
            if one("pmxcfs.group") != "pve_dcdb_v1" && one("pmxcfs.group") != "pve_kvstore_v1" {
                continue;
            }
            dissected.push((
                one("pmxcfs.group"),
                one("pmxcfs.sender_nodeid"),
                one("pmxcfs.sender_pid"),
                f,
            ));
        }
    }
    let mut used = vec![false; dissected.len()];
    for (id, (group, message)) in &expected {
        let found = dissected
            .iter()
            .enumerate()
            .position(|(i, (g, s, pid, f))| {
                !used[i]
                    && g == group
                    && id.contains(&format!("\"{g}\" {s} {pid} "))
                    && compare_message(group, message, f).is_empty()
            });
        match found {
            Some(i) => used[i] = true,
            None => panic!("no dissected message matches {id}"),
        }
    }
    // Every CPG message of the pmxcfs groups in the capture was handed to
    // some node (none were lost to a failure here).
    assert_eq!(used.iter().filter(|u| **u).count(), dissected.len());
    // A person's display filters.
    let filter = |f: &str| -> usize {
        let out = Command::new("tshark")
            .arg("-X")
            .arg(format!("lua_script:{}", lua().display()))
            .arg("-r")
            .arg(&dec)
            .args(["-Y", f])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert!(filter("pmxcfs.dcdb.path contains \"qemu-server\" && !totem.copy_of") >= 3);
    let states = dissected
        .iter()
        .filter(|d| d.3.get("pmxcfs.kind").is_some_and(|k| k[0] == "STATE"))
        .count();
    assert!(states > 0);
    assert!(filter("pmxcfs.type == STATE && !totem.copy_of") > 0);
    assert!(filter("pmxcfs.epoch") > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Deterministic mutations of a seed: every truncation of a short one (a
/// sample of a long one) and byte flips.
fn mutations(seed: &[u8], out: &mut Vec<Vec<u8>>) {
    out.push(seed.to_vec());
    let step = (seed.len() / 64).max(1);
    let mut n = 0;
    while n < seed.len() {
        out.push(seed[..n].to_vec());
        n += step;
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed.len() as u64;
    for _ in 0..16 {
        if seed.is_empty() {
            break;
        }
        let mut m = seed.to_vec();
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % m.len() as u64) as usize;
            m[i] ^= (x >> 32) as u8 | 1;
        }
        out.push(m);
    }
}

fn seeds(dir: &str) -> Vec<Vec<u8>> {
    let d = root().join("fuzz/seeds").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// A dfsm header for payload seeds of the sub-structures.
fn framed(msg_type: u16, subtype: u16, version: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&msg_type.to_le_bytes());
    v.extend_from_slice(&subtype.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    if msg_type == 0 {
        v.extend_from_slice(&7u64.to_le_bytes());
    } else {
        for x in [3u32, 1_700_000_000, 1, 4242] {
            v.extend_from_slice(&x.to_le_bytes());
        }
    }
    v.extend_from_slice(payload);
    v
}

#[test]
fn the_fuzz_seeds_and_their_mutations_cause_no_lua_error() {
    let dcdb = b"pve_dcdb_v1\0".as_slice();
    let kv = b"pve_kvstore_v1\0".as_slice();
    // (group, message) for the message-level seeds.
    let mut messages: Vec<(&[u8], Vec<u8>)> = Vec::new();
    for s in seeds("dcdb_message") {
        let mut m = Vec::new();
        mutations(&s, &mut m);
        messages.extend(m.into_iter().map(|m| (dcdb, m)));
    }
    for s in seeds("dfsm_message") {
        let mut m = Vec::new();
        mutations(&s, &mut m);
        messages.extend(m.iter().map(|m| (b"other\0".as_slice(), m.clone())));
        messages.extend(m.into_iter().map(|m| (dcdb, m)));
    }
    for s in seeds("kvstore_message") {
        let mut m = Vec::new();
        mutations(&s, &mut m);
        messages.extend(m.into_iter().map(|m| (kv, m)));
    }
    let parts: [(&str, &[u8], u16, u16, u32); 7] = [
        ("fuse_message", dcdb, 0, 1, 1),
        ("unlock_message", dcdb, 0, 8, 1),
        ("memdb_index", dcdb, 2, 0, 1),
        ("tree_entry", dcdb, 3, 0, 1),
        ("kv_update", kv, 0, 1, 0),
        ("clog_entry", kv, 0, 3, 0),
        ("clog_buffer", kv, 2, 0, 0),
    ];
    for (dir, group, t, st, v) in parts {
        for s in seeds(dir) {
            let mut m = Vec::new();
            mutations(&s, &mut m);
            messages.extend(m.into_iter().map(|p| (group, framed(t, st, v, &p))));
        }
    }
    let dir = scratch("fuzz");
    // As records of the capture format...
    let mut pcap = pcap_file_header();
    for (i, (group, msg)) in messages.iter().enumerate() {
        let e = Event::new(
            EventKind::Deliver,
            1,
            100,
            group,
            EventBody::Deliver {
                sender_nodeid: 2,
                sender_pid: 200,
                msg: msg.clone(),
            },
        );
        pcap.extend(pcap_record(1_700_000_000 + i as u32, 0, &e.to_bytes()));
    }
    // ... with damaged records too.
    let whole = Event::new(
        EventKind::Confchg,
        1,
        100,
        dcdb,
        EventBody::Confchg {
            members: vec![],
            left: vec![],
            joined: vec![],
        },
    )
    .to_bytes();
    let mut damaged = Vec::new();
    mutations(&whole, &mut damaged);
    for d in &damaged {
        pcap.extend(pcap_record(1_700_000_000, 0, d));
    }
    let records = dir.join("records.pcap");
    std::fs::write(&records, &pcap).unwrap();
    let packets = tshark_json(&records);
    assert_eq!(packets.len(), messages.len() + damaged.len());

    // And on the wire: the totem seeds, the totempg and service seeds in
    // multicasts, every message seed in a CPG mcast.
    let ring = RingId { rep: 1, seq: 0xd };
    let mut totems: Vec<Vec<u8>> = Vec::new();
    for s in seeds("knet_totem_message") {
        mutations(&s, &mut totems);
    }
    let mut seq = 1;
    let mut mcast = |payload: &[u8], totems: &mut Vec<Vec<u8>>| {
        totems.push(forge::totem_mcast(1, seq, ring, 2, payload));
        seq += 1;
    };
    for s in seeds("knet_totempg_payload") {
        let mut m = Vec::new();
        mutations(&s, &mut m);
        for p in m {
            mcast(&p, &mut totems);
        }
    }
    for s in seeds("knet_service_message") {
        let mut m = Vec::new();
        mutations(&s, &mut m);
        for p in m {
            mcast(&forge::totempg(0, 0, &[&p]), &mut totems);
        }
    }
    for (group, msg) in messages.iter().take(4000) {
        let service = forge::cpg_mcast(group, 2, 200, msg);
        if service.len() < 60_000 {
            mcast(&forge::totempg(0, 0, &[&service]), &mut totems);
        }
    }
    let frames: Vec<(f64, Vec<u8>)> = totems
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                1_700_000_000.0 + i as f64 / 1000.0,
                forge::udp_frame([10, 0, 0, 1], [10, 0, 0, 2], 5405, t),
            )
        })
        .filter(|(_, f)| f.len() < 65_000)
        .collect();
    let wire = dir.join("wire.pcap");
    std::fs::write(&wire, forge::pcap(&frames)).unwrap();
    let packets = tshark_json(&wire);
    assert_eq!(packets.len(), frames.len());
    let _ = std::fs::remove_dir_all(&dir);
}
