//! A tree at C's documented limits (256 Ki entries, 128 MiB of data, files
//! of 1 MiB): a node starts on it and serves every kind of file, and an
//! empty node joining it receives all of it through corosync, each daemon
//! within bounded memory. Times are printed, never asserted (the benchmark
//! `local_fs` reports them).

mod cluster;

#[path = "common/tree.rs"]
#[allow(dead_code)]
mod tree;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster::{require_root, Cluster};
use tree::{generate, guest_config, TreeSpec};

fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// The memory a daemon may hold for a tree of `data` bytes in `entries`
/// entries. Like C, it keeps the whole tree in RAM (C: 76 MB for the 51 MB
/// of 52 000 files); we measured about 2.3x the data at the limits (the
/// data, per-entry structures, the inode table, SQLite's cache). The bound
/// has room for the noise of malloc, not for a second copy of the tree or
/// a leak per entry.
fn memory_bound_kb(data: u64, entries: u64) -> u64 {
    let data_kb = data / 1024;
    // Data once, 600 bytes per entry, 64 MiB for the binary, threads,
    // SQLite and a sync's messages in flight.
    data_kb + entries * 600 / 1024 + 64 * 1024
}

/// Every 101st guest config and every 1 MiB file below `etc_pve`, byte
/// for byte.
fn check_sample(etc_pve: &Path, spec: &TreeSpec, node: &str) {
    let mut vmid = 100u32;
    let mut checked = 0;
    for n in 0..spec.nodes {
        for _ in 0..spec.guests_per_node {
            if vmid % 101 == 0 {
                let p = etc_pve.join(format!("nodes/node{n}/qemu-server/{vmid}.conf"));
                let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{node}: {p:?}: {e}"));
                assert!(
                    got == guest_config(vmid, spec.guest_size),
                    "{node}: {p:?} differs"
                );
                checked += 1;
            }
            vmid += 1;
        }
    }
    for i in 0..spec.big_files {
        let p = etc_pve.join(format!("nodes/node0/big/blob{i}.bin"));
        let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{node}: {p:?}: {e}"));
        assert_eq!(got.len(), spec.big_size, "{node}: {p:?}");
        assert!(got.iter().all(|b| *b == b'b'), "{node}: {p:?} differs");
    }
    assert!(checked > 2000, "{node}: sampled {checked} guests");
}

/// Wait until `path` exists; after `secs`, fail with both nodes' logs.
fn wait_for_file(c: &Cluster, path: &Path, secs: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{what}: not after {secs} s\nnode 1:\n{}\nnode 2:\n{}",
            c.log(1),
            c.log(2)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// statvfs of the mount: used inodes as the daemon counts them.
fn used_entries(etc_pve: &Path) -> u64 {
    let path = std::ffi::CString::new(etc_pve.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
    st.f_files - st.f_ffree
}

#[test]
fn a_tree_at_the_limits_starts_serves_and_syncs_in_bounded_memory() {
    require_root();
    let mut c = Cluster::new("lt", 2);
    let spec = TreeSpec::limits();
    let db = c.nodes[0].dir.join("varlib/pve-cluster/config.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let t = Instant::now();
    let g = generate(&db, &spec);
    // The cluster's corosync.conf, as a node of it has it.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "INSERT INTO tree VALUES ((SELECT max(inode) FROM tree) + 1, 0, \
         (SELECT version FROM tree WHERE inode = 0) + 1, 0, 1700000000, 8, 'corosync.conf', ?1)",
        [cluster::corosync_conf(2, &c.prefix).into_bytes()],
    )
    .unwrap();
    conn.execute("UPDATE tree SET version = version + 1 WHERE inode = 0", [])
        .unwrap();
    drop(conn);
    let entries = g.entries + 1;
    let bound = memory_bound_kb(g.bytes, entries);
    println!(
        "generated {entries} entries, {} MB of data in {:.1} s; memory bound {} MB",
        g.bytes / 1_000_000,
        t.elapsed().as_secs_f64(),
        bound / 1024
    );
    // Within 1% of both limits, under them (C refuses more).
    assert!(entries > 259_500 && entries <= 262_144, "{entries} entries");
    assert!(
        g.bytes > 120 << 20 && g.bytes <= 128 << 20,
        "{} bytes",
        g.bytes
    );

    c.start_corosync_all();
    let t = Instant::now();
    c.start_pmxcfs(1);
    let one = c.etc_pve(1);
    let last = one.join(&g.last_file);
    wait_for_file(&c, &last, 120, "node 1 serving the tree");
    println!(
        "node 1 serves the tree {:.1} s after its start",
        t.elapsed().as_secs_f64()
    );
    let pid1 = c.pmxcfs_pid(1).unwrap();
    assert_eq!(used_entries(&one), entries, "node 1 counts every entry");
    check_sample(&one, &spec, "node 1");
    let hwm1 = status_kb(pid1, "VmHWM:");
    println!("node 1 VmHWM after start and reads: {} MB", hwm1 / 1024);
    assert!(hwm1 <= bound, "node 1 holds {hwm1} kB, bound {bound} kB");

    // An empty node joins: node 1 sends it everything.
    let t = Instant::now();
    c.start_pmxcfs(2);
    let two = c.etc_pve(2);
    let last2 = two.join(&g.last_file);
    wait_for_file(&c, &last2, 900, "node 2 receiving the tree");
    println!(
        "node 2 received the tree in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let pid2 = c.pmxcfs_pid(2).unwrap();
    assert_eq!(used_entries(&two), entries, "node 2 counts every entry");
    check_sample(&two, &spec, "node 2");
    // The same database version on both (the root's mtime is the version's
    // stamp in `ls`; the inode count and the samples say the rest).
    let version = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().mtime()
    };
    assert_eq!(version(&one), version(&two), "both roots at one mtime");
    let (leader, receiver) = (status_kb(pid1, "VmHWM:"), status_kb(pid2, "VmHWM:"));
    let rss = [status_kb(pid1, "VmRSS:"), status_kb(pid2, "VmRSS:")];
    println!(
        "VmRSS after the sync: node 1 {} MB, node 2 {} MB",
        rss[0] / 1024,
        rss[1] / 1024
    );
    // Once the sync is done, both hold what serving the tree takes: the
    // copies a sync is made of are handed back to the system.
    for (i, kb) in rss.iter().enumerate() {
        assert!(
            *kb <= bound,
            "node {} keeps {kb} kB after the sync, bound {bound} kB",
            i + 1
        );
    }
    println!(
        "VmHWM after the sync: node 1 (sent it) {} MB, node 2 (received it) {} MB",
        leader / 1024,
        receiver / 1024
    );
    // The receiver holds the updates until UPDATE_COMPLETE (as C), then
    // the rows it writes and the new tree at once: 2.75x the data more
    // at most (measured 2.2x), not a further copy.
    let receiver_bound = bound + 11 * g.bytes / 4 / 1024;
    assert!(
        receiver <= receiver_bound,
        "node 2 holds {receiver} kB after the sync, bound {receiver_bound} kB"
    );
    // The leader builds every UPDATE of the sync in one batch and holds
    // them until corosync has taken them all (C sends them one at a
    // time): twice the data more at most while it sends (measured 1.7x).
    let leader_bound = bound + 2 * g.bytes / 1024;
    assert!(
        leader <= leader_bound,
        "node 1 holds {leader} kB while sending, bound {leader_bound} kB"
    );
    let log2 = c.log(2);
    assert!(log2.contains("all data is up to date"), "{log2}");

    // Node 1's database (4 KiB pages, far above the size converted at
    // open) got 1 KiB pages in the background, its tree unchanged, while
    // it served and synced.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !c
        .log(1)
        .contains("[database] notice: database page size 4096 changed to 1024")
    {
        assert!(Instant::now() < deadline, "no conversion: {}", c.log(1));
        std::thread::sleep(Duration::from_millis(500));
    }
    let page_size: i64 =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
    assert_eq!(page_size, 1024);
    check_sample(&one, &spec, "node 1 after the conversion");
    c.sh(1, "echo after > /etc/pve/after-conversion.cfg");
    wait_for_file(
        &c,
        &two.join("after-conversion.cfg"),
        30,
        "a write after the conversion",
    );
    let persisted =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM tree WHERE name = 'after-conversion.cfg'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap();
    assert_eq!(persisted, 1, "the write is in the converted file");
}
