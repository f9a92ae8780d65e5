//! Cluster benchmark on real corosync (3 nodes in namespaces, see
//! tests/cluster): how long a write on one node takes to be visible on
//! another, and how long a node with an empty database takes to receive
//! the 5000-file tree. Not a test; figures go to the README.
//!
//!     cargo bench --bench cluster        (as root)

#[path = "../tests/cluster/mod.rs"]
mod cluster;

use std::process::Stdio;
use std::time::{Duration, Instant};

use cluster::Cluster;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn online(c: &Cluster, id: u32, n: usize) {
    c.wait_for(
        id,
        "members online",
        &format!("test $(grep -c '\"online\": 1' /etc/pve/.members) -eq {n}"),
        120,
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    assert!(unsafe { libc::geteuid() } == 0, "run as root");

    // Write-to-visible latency, node 1 → node 2.
    let mut c = Cluster::new("bl", 3);
    c.start_all();
    online(&c, 2, 3);
    let mut samples = Vec::new();
    for i in 0..30 {
        let path = format!("/etc/pve/latency{i}.cfg");
        let mut watcher = c
            .command(2, "sh")
            .args(["-c", &format!("while [ ! -e {path} ]; do :; done")])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        cluster::write(&c, 1, &format!("latency{i}.cfg"), "x\n").unwrap();
        watcher.wait().unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("write on node 1 until visible on node 2 (includes starting the writer): median {:.1} ms over 30", median(samples));
    drop(c);

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
    for id in 1..=n {
        c.start_corosync(id);
    }
    for id in 1..=n {
        c.wait_for(
            id,
            "corosync quorate",
            "corosync-quorumtool -s >/dev/null 2>&1",
            60,
        );
    }
    c.start_pmxcfs(1);
    let last = String::from_utf8(
        std::process::Command::new("sqlite3")
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
