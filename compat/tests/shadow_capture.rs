//! `pmxcfs-replay shadow` over the shared capture of a real C cluster
//! (captures/w1-encrypted-basic: every pmxcfs there started on a new
//! database, from the scenario's corosync.conf), and its command line.

use std::path::PathBuf;
use std::process::Command;

use pmxcfs_compat::knet::DEFAULT_PORTS;
use pmxcfs_compat::shadow::{self, Options, StartDb};

fn w1() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../captures/w1-encrypted-basic")
}

fn replay(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pmxcfs-replay"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn shadow_w1(node: u32, capture: &std::path::Path) -> shadow::Report {
    let dir = w1();
    let mut reader = std::io::BufReader::new(std::fs::File::open(capture).unwrap());
    shadow::run(
        &mut reader,
        vec![std::fs::read(dir.join("authkey")).unwrap()],
        DEFAULT_PORTS,
        Options {
            node,
            start_db: StartDb::Fresh,
            corosync_conf: Some(std::fs::read(dir.join("corosync.conf")).unwrap()),
            node_ip: None,
        },
        &mut |_| {},
    )
    .unwrap()
}

/// Every C node of the capture, shadowed from a new database: every
/// message each sent is the one our core decides (the same counts as
/// `check` over their own recordings), and the states agree.
#[test]
fn every_c_node_of_w1_is_matched() {
    let capture = w1().join("wire.pcapng");
    let mut totals = Vec::new();
    for node in 1..=3 {
        let r = shadow_w1(node, &capture);
        assert!(r.ok(), "{}", r.text());
        let m: u64 = r.messages.values().map(|t| t.total).sum();
        let s: u64 = r.states.values().map(|t| t.total).sum();
        totals.push((node, m, s, r.processes.len()));
    }
    // Node 3's pmxcfs was restarted on its old database and caught up.
    assert_eq!(totals[2].3, 2, "{totals:?}");
    let messages: Vec<u64> = totals.iter().map(|t| t.1).collect();
    assert_eq!(messages, [51, 40, 25], "{totals:?}");
    assert!(totals.iter().all(|t| t.2 >= 2), "{totals:?}");
}

/// The capture without its packets before `from` (capture seconds): a
/// pcapng file keeps its section and interface blocks.
fn pcapng_from(bytes: &[u8], from: f64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    // Seconds per timestamp unit (if_tsresol, a power of ten here).
    let mut unit = 1e-6;
    while at + 12 <= bytes.len() {
        let kind = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let block = &bytes[at..at + len];
        if kind == 1 {
            let mut opts = &block[16..len - 4];
            while opts.len() >= 4 {
                let code = u16::from_le_bytes([opts[0], opts[1]]);
                let olen = u16::from_le_bytes([opts[2], opts[3]]) as usize;
                if code == 9 {
                    unit = 10f64.powi(-(opts[4] as i32));
                }
                if code == 0 {
                    break;
                }
                opts = &opts[4 + olen.div_ceil(4) * 4..];
            }
        }
        let keep = if kind == 6 {
            let hi = u32::from_le_bytes(block[12..16].try_into().unwrap()) as u64;
            let lo = u32::from_le_bytes(block[16..20].try_into().unwrap()) as u64;
            ((hi << 32) | lo) as f64 * unit >= from
        } else {
            true
        };
        if keep {
            out.extend_from_slice(block);
        }
        at += len;
    }
    out
}

/// A capture that begins after the node's pmxcfs started proves nothing
/// about it: said so, exit status 1.
#[test]
fn a_node_whose_pmxcfs_started_before_the_capture_is_not_judged() {
    let bytes = std::fs::read(w1().join("wire.pcapng")).unwrap();
    // 05:10:05 UTC: every node's first pmxcfs runs (SCENARIO.md).
    let late = pcapng_from(&bytes, 1_795_237_805.0);
    assert!(late.len() < bytes.len() / 2 * 3 && late.len() > 1000);
    let tmp = std::env::temp_dir().join(format!("shadow-late-{}.pcapng", std::process::id()));
    std::fs::write(&tmp, &late).unwrap();
    let r = shadow_w1(1, &tmp);
    // Node 3's second process starts later, on a database our run
    // cannot have: its first STATE is not a new database's.
    let r3 = shadow_w1(3, &tmp);
    std::fs::remove_file(&tmp).unwrap();
    assert!(!r.ok(), "{}", r.text());
    assert!(r.processes.is_empty(), "{}", r.text());
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("does not hold the start of node 1's pmxcfs")),
        "{}",
        r.text()
    );
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("the capture begins inside ring")),
        "{}",
        r.text()
    );
    assert!(!r3.ok(), "{}", r3.text());
    assert_eq!(r3.processes.len(), 1, "{}", r3.text());
}

#[test]
fn command_line_contract() {
    let dir = w1();
    let key = dir.join("authkey");
    let conf = dir.join("corosync.conf");
    let cap = dir.join("wire.pcapng");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "shadow",
            "--authkey",
            key.to_str().unwrap(),
            "--fresh",
            "--corosync-conf",
            conf.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        replay(&refs)
    };

    // A match: exit 0, the stable last line.
    let (code, out, _) = run(args(&["--node", "2", "--quiet", cap.to_str().unwrap()]));
    assert_eq!(code, 0, "{out}");
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("shadow: node 2, messages matched 40/40, states matched ")
            && last.ends_with(": MATCH"),
        "{last}"
    );
    assert!(out.contains("dcdb STATE"), "{out}");
    assert!(out.contains("taken from outside the capture"), "{out}");

    // --json: one object a program can read.
    let (code, out, _) = run(args(&[
        "--node",
        "1",
        "--json",
        "-q",
        cap.to_str().unwrap(),
    ]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["messages_total"], 51);
    assert_eq!(v["messages_matched"], 51);

    // Progress goes to standard error (the capture is small: at least the
    // command says nothing there when told to be quiet).
    let (_, _, err) = run(args(&["--node", "1", "-q", cap.to_str().unwrap()]));
    assert!(err.is_empty(), "{err}");

    // A capture cut in the middle: exit 1, said in words.
    let bytes = std::fs::read(&cap).unwrap();
    let tmp = std::env::temp_dir().join(format!("shadow-cut-{}.pcapng", std::process::id()));
    std::fs::write(&tmp, &bytes[..bytes.len() / 2 + 3]).unwrap();
    let (code, out, _) = run(args(&["--node", "2", "-q", tmp.to_str().unwrap()]));
    std::fs::remove_file(&tmp).unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cut short"), "{out}");
    assert!(out.trim_end().ends_with(": DIVERGED"), "{out}");

    // A wrong key: exit 1 and a clear message.
    let bad = std::env::temp_dir().join(format!("shadow-key-{}", std::process::id()));
    std::fs::write(&bad, [0x42u8; 256]).unwrap();
    let (code, out, err) = replay(&[
        "shadow",
        "--authkey",
        bad.to_str().unwrap(),
        "--fresh",
        "--corosync-conf",
        conf.to_str().unwrap(),
        "--node",
        "2",
        cap.to_str().unwrap(),
    ]);
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(code, 1);
    assert!(
        err.contains("no packet authenticates with the given key"),
        "{err}"
    );
    assert!(out.trim_end().ends_with(": DIVERGED"), "{out}");

    // Usage errors: exit 2.
    for bad_args in [
        vec!["shadow", "--fresh", "--node", "2", cap.to_str().unwrap()],
        vec![
            "shadow",
            "--authkey",
            key.to_str().unwrap(),
            "--node",
            "2",
            cap.to_str().unwrap(),
        ],
        vec![
            "shadow",
            "--authkey",
            key.to_str().unwrap(),
            "--fresh",
            cap.to_str().unwrap(),
        ],
        vec![
            "shadow",
            "--authkey",
            key.to_str().unwrap(),
            "--db",
            "/nonexistent/config.db",
            "--node",
            "2",
            cap.to_str().unwrap(),
        ],
    ] {
        let (code, _, err) = replay(&bad_args);
        assert_eq!(code, 2, "{bad_args:?}: {err}");
        assert!(!err.is_empty());
    }
    // A node outside the nodelist: said before anything is read.
    let (code, _, err) = run(args(&["--node", "9", cap.to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(
        err.contains("node 9 is not in corosync.conf's nodelist"),
        "{err}"
    );
}
