//! Cluster benchmark on real corosync (nodes in namespaces, see
//! tests/cluster): how long a write on one node takes to be visible on
//! another and on every node (median and 95th percentile, a new file and PVE's tmp + rename),
//! and how long a node with an empty database takes to receive the
//! 5000-file tree. Not a test; figures go to docs/performance.md.
//!
//!     cargo bench --bench cluster                    (as root)
//!     BENCH_NODES=3,5,7                              (cluster sizes, default 3)
//!     BENCH_SAMPLES=100 PMXCFS_NODE1_CMD=... PMXCFS_NODE2_CMD=...
//!                                                    (fewer samples, another build)

#[path = "../tests/cluster/mod.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::Cluster;

/// C's write → visible median on this machine type (issue #15).
const C_VISIBLE_MS: f64 = 3.7;

/// The value below which a fraction `q` of the samples lie.
fn percentile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn online(c: &Cluster, id: u32, n: usize) {
    c.wait_for(
        id,
        "members online",
        &format!("test $(grep -c '\"online\": 1' /etc/pve/.members) -eq {n}"),
        120,
    );
}

/// A write on node 1, polled for on node 2 and on every other node.
fn latency(n: usize, samples: usize) {
    let mut c = Cluster::new(&format!("bl{n}"), n as u32);
    c.start_all();
    for id in 1..=n as u32 {
        online(&c, id, n);
    }
    let writer = c.etc_pve(1);
    let readers: Vec<_> = (2..=n as u32).map(|id| c.etc_pve(id)).collect();
    println!("{n}-node cluster:");
    for (what, pve_style) in [
        ("new file of 200 B", false),
        ("PVE-style save (tmp + rename onto the target)", true),
    ] {
        let (mut committed, mut on_node2, mut everywhere) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..samples + 10 {
            let content = format!("sample {i:06}\n").repeat(14).into_bytes();
            let name = if pve_style {
                "target.cfg".to_string()
            } else {
                format!("latency{i}.cfg")
            };
            let t = Instant::now();
            if pve_style {
                let tmp = writer.join(format!("target.cfg.tmp.{i}"));
                std::fs::write(&tmp, &content).unwrap();
                std::fs::rename(&tmp, writer.join(&name)).unwrap();
            } else {
                std::fs::write(writer.join(&name), &content).unwrap();
            }
            let local = t.elapsed();
            let deadline = t + Duration::from_secs(10);
            // Node 2 first (the figure comparable with earlier runs), then
            // the others; a node already seen is not read again.
            let mut seen = vec![false; readers.len()];
            let mut node2 = None;
            while seen.iter().any(|s| !s) {
                for (k, r) in readers.iter().enumerate() {
                    if !seen[k] && std::fs::read(r.join(&name)).is_ok_and(|b| b == content) {
                        seen[k] = true;
                        if k == 0 {
                            node2 = Some(t.elapsed());
                        }
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "sample {i} not visible on every node in 10 s"
                );
                std::thread::yield_now();
            }
            let all = t.elapsed();
            // The first samples warm the daemons' caches.
            if i >= 10 {
                committed.push(local.as_secs_f64() * 1000.0);
                on_node2.push(node2.unwrap_or(all).as_secs_f64() * 1000.0);
                everywhere.push(all.as_secs_f64() * 1000.0);
            }
        }
        println!("  {what}, {samples} samples:");
        for (label, v) in [
            (
                "committed on node 1 (the writer's calls return)",
                &committed,
            ),
            ("identical bytes readable on node 2", &on_node2),
            ("identical bytes readable on every node", &everywhere),
        ] {
            println!(
                "    {label:<50} median {:>6.2} ms  p95 {:>6.2} ms",
                percentile(v, 0.5),
                percentile(v, 0.95)
            );
        }
    }
    println!("    (C, 3 nodes, new file readable on node 2: median {C_VISIBLE_MS} ms)");
    drop(c);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    assert!(unsafe { libc::geteuid() } == 0, "run as root");

    // Write-to-visible latency, node 1 → node 2 and → every node, through
    // the mounts from this process (no process started per sample), for
    // each cluster size of BENCH_NODES (default 3; e.g. 3,5,7).
    let sizes: Vec<usize> = std::env::var("BENCH_NODES")
        .unwrap_or_else(|_| "3".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let samples = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for n in sizes {
        latency(n, samples);
    }
    // An empty node receives the 5000-file tree: node 1 starts with the
    // fixture (plus corosync.conf), nodes 2 and 3 with nothing.
    let mut c = Cluster::new("bs", 3);
    let n = c.nodes.len() as u32;
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/files-5000.db");
    let conf = cluster::corosync_conf(n, &c.prefix);
    let db = c.nodes[0].dir.join("varlib/pve-cluster/config.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    std::fs::copy(&fixture, &db).unwrap();
    let sql = format!(
        "INSERT INTO tree VALUES(9000000,0,(SELECT version FROM tree WHERE inode=0)+1,0,strftime('%s','now'),8,'corosync.conf',X'{}'); \
         UPDATE tree SET version=version+1 WHERE inode=0;",
        conf.bytes().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(&sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.start_corosync_all();
    c.start_pmxcfs(1);
    let last = String::from_utf8(
        std::process::Command::new("sqlite3")
            .arg("-readonly")
            .arg(&fixture)
            .arg(
                "WITH RECURSIVE p(inode, path) AS (SELECT inode, name FROM tree WHERE parent = 0 AND inode != 0 \
                 UNION ALL SELECT t.inode, p.path || '/' || t.name FROM tree t JOIN p ON t.parent = p.inode) \
                 SELECT path FROM p JOIN tree t USING (inode) WHERE t.type = 8 ORDER BY inode DESC LIMIT 1",
            )
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let t = Instant::now();
    c.start_pmxcfs(3);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !c
        .sh(3, &format!("test -e '/etc/pve/{last}'"))
        .status
        .success()
    {
        if Instant::now() > deadline {
            panic!(
                "no sync in 300 s\nnode 1:\n{}\nnode 3:\n{}",
                c.log(1),
                c.log(3)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("empty node 3 receiving the 5000-file tree from node 1: {:.2} s (start of its daemon until its last file is there)", t.elapsed().as_secs_f64());
}
