//! No reader waits for the cluster: with node 1's corosync frozen
//! (SIGSTOP) and four writers on node 1 waiting for their changes to come
//! back from the cluster, reads of other files on node 1 are answered at
//! once; the writers complete once corosync continues; and SIGTERM during
//! the freeze stops the daemon within pve-cluster.service's 10 s.
//!
//! Needs root, /dev/fuse, network namespaces and corosync (real, no mock).

mod cluster;

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cluster::{read, require_root, write, Cluster};

/// How long a read may take while writers wait (C: 5-21 ms measured; the
/// bound leaves room for a loaded CI machine, and is far below the
/// seconds a reader waited behind two writers before).
const READ_BOUND: Duration = Duration::from_millis(500);
const WRITERS: usize = 4;

fn signal(pid: u32, sig: i32) {
    // SAFETY: a signal to a process this test started.
    assert_eq!(
        unsafe { libc::kill(pid as i32, sig) },
        0,
        "kill {pid} {sig}"
    );
}

/// Start the writers (each overwrites its own file through node 1's
/// mount) and return what each ends with, and when.
fn start_writers(c: &Cluster, round: &str) -> mpsc::Receiver<(usize, Result<(), String>, Instant)> {
    let (tx, rx) = mpsc::channel();
    for i in 0..WRITERS {
        let path: PathBuf = c.etc_pve(1).join(format!("stall{i}.cfg"));
        let tx = tx.clone();
        let content = format!("{round} {i}\n");
        std::thread::spawn(move || {
            let r = std::fs::write(&path, content).map_err(|e| e.to_string());
            let _ = tx.send((i, r, Instant::now()));
        });
    }
    rx
}

/// Time reads of files the writers do not touch, over `secs` seconds, on
/// a thread of their own (a daemon whose readers wait would hold it): the
/// slowest of each, sent when done.
fn time_reads(c: &Cluster, secs: u64) -> mpsc::Receiver<Vec<(&'static str, Duration)>> {
    let (tx, rx) = mpsc::channel();
    let root = c.etc_pve(1);
    std::thread::spawn(move || {
        let _ = tx.send(slowest_reads(&root, secs));
    });
    rx
}

fn slowest_reads(root: &std::path::Path, secs: u64) -> Vec<(&'static str, Duration)> {
    let files = [
        ("unrelated.cfg", root.join("unrelated.cfg")),
        (".members", root.join(".members")),
        ("other/dir.cfg", root.join("other/dir.cfg")),
    ];
    let mut slowest = vec![Duration::ZERO; files.len()];
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        for (i, (_, path)) in files.iter().enumerate() {
            let t = Instant::now();
            std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            slowest[i] = slowest[i].max(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    files.iter().map(|(n, _)| *n).zip(slowest).collect()
}

#[test]
fn reads_are_answered_while_writers_wait_for_a_frozen_corosync() {
    require_root();
    let mut c = Cluster::formed("st", 3);
    write(&c, 1, "unrelated.cfg", "unrelated\n").unwrap();
    assert!(c.sh(1, "mkdir /etc/pve/other").status.success());
    write(&c, 1, "other/dir.cfg", "in another directory\n").unwrap();
    for i in 0..WRITERS {
        write(&c, 1, &format!("stall{i}.cfg"), "before\n").unwrap();
    }
    c.wait_for(2, "the first files", "test -e /etc/pve/stall3.cfg", 20);

    // Freeze node 1's corosync with the writers waiting.
    let corosync = c.corosync_pid(1).expect("corosync of node 1");
    signal(corosync, libc::SIGSTOP);
    let frozen = Instant::now();
    let writers = start_writers(&c, "frozen");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        writers.try_recv().is_err(),
        "a writer finished while corosync was frozen"
    );
    let reads = time_reads(&c, 4).recv_timeout(Duration::from_secs(6));
    // corosync continues whatever the reads did, so a daemon whose
    // readers wait fails here rather than hanging the test.
    signal(corosync, libc::SIGCONT);
    let thawed = Instant::now();
    let reads = reads.unwrap_or_else(|_| {
        panic!("reads of other files on node 1 did not return while {WRITERS} writers waited")
    });
    eprintln!("slowest reads while the writers waited: {reads:?}");
    for (name, slowest) in &reads {
        assert!(
            *slowest < READ_BOUND,
            "a read of {name} took {slowest:?} while {WRITERS} writers waited (frozen for {:?})",
            thawed - frozen
        );
    }
    // The writers complete once corosync is back, and what they wrote is
    // the cluster's.
    for _ in 0..WRITERS {
        let (i, result, _) = writers
            .recv_timeout(Duration::from_secs(60))
            .expect("every writer completes once corosync continues");
        result.unwrap_or_else(|e| panic!("writer {i}: {e}\n{}", c.log(1)));
    }
    for i in 0..WRITERS {
        c.wait_for(
            2,
            "the writes made during the freeze",
            &format!("grep -qx 'frozen {i}' /etc/pve/stall{i}.cfg"),
            60,
        );
    }
    assert_eq!(read(&c, 1, "stall0.cfg").as_deref(), Some("frozen 0\n"));

    // SIGTERM while corosync is frozen and writers wait: the daemon is
    // gone within pve-cluster.service's TimeoutStopSec=10.
    signal(corosync, libc::SIGSTOP);
    let writers = start_writers(&c, "stopping");
    std::thread::sleep(Duration::from_millis(500));
    let pmxcfs = c.pmxcfs_pid(1).expect("pmxcfs of node 1");
    signal(pmxcfs, libc::SIGTERM);
    let took = c.wait_pmxcfs_exit(1, Duration::from_secs(10));
    signal(corosync, libc::SIGCONT);
    let took =
        took.unwrap_or_else(|| panic!("pmxcfs did not exit within 10 s of SIGTERM\n{}", c.log(1)));
    eprintln!("pmxcfs exited {took:?} after SIGTERM with corosync frozen");
    // Every writer was answered (an error: its change never reached the
    // cluster, so nothing of it was acknowledged).
    for _ in 0..WRITERS {
        let (i, result, _) = writers
            .recv_timeout(Duration::from_secs(10))
            .expect("a waiting writer is answered when the daemon stops");
        eprintln!("writer {i} during the stop: {result:?}");
    }
    assert!(c
        .log(1)
        .contains("exit proxmox configuration filesystem (0)"));
}
