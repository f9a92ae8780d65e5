//! Cluster mode on real corosync: three nodes in their own namespaces form
//! a cluster, and a write on any node is visible on every node.

mod cluster;

use cluster::{read, require_root, write, Cluster};

/// Clusters of one test binary run one at a time: the machine has 2 cores.
static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn three_nodes_form_and_replicate_writes() {
    require_root();
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("f", 3);
    c.extra_args = vec!["--record".into(), "/run/pmxcfs.pcap".into()];
    c.start_all();
    for id in 1..=3 {
        c.wait_for(id, "quorate with 3 members online", "grep -q '\"quorate\": 1' /etc/pve/.members && test $(grep -c '\"online\": 1' /etc/pve/.members) -eq 3", 60);
    }
    // Addresses travel through the kvstore (`nodeip`), names through cmap.
    for id in 1..=3 {
        c.wait_for(
            id,
            "every node's address in .members",
            "grep -q '\"testnode2\": { \"id\": 2, \"online\": 1, \"ip\": \"10.99.0.2\"}' /etc/pve/.members",
            30,
        );
    }
    // corosync.conf was imported and is the same everywhere.
    for id in 1..=3 {
        assert!(read(&c, id, "corosync.conf")
            .unwrap()
            .contains("cluster_name"));
    }
    write(&c, 1, "storage.cfg", "dir: local\n\tpath /var/lib/vz\n").unwrap();
    c.sh(1, "mkdir -p /etc/pve/nodes/testnode1/qemu-server");
    write(
        &c,
        1,
        "nodes/testnode1/qemu-server/100.conf",
        "name: vm100\nmemory: 512\n",
    )
    .unwrap();
    write(&c, 3, "datacenter.cfg", "keyboard: de\n").unwrap();
    for id in 1..=3 {
        c.wait_for(
            id,
            "node1's write",
            "grep -q 'path /var/lib/vz' /etc/pve/storage.cfg",
            20,
        );
        c.wait_for(
            id,
            "node3's write",
            "grep -q 'keyboard: de' /etc/pve/datacenter.cfg",
            20,
        );
        c.wait_for(
            id,
            "the VM in .vmlist",
            "grep -q '\"100\": { \"node\": \"testnode1\"' /etc/pve/.vmlist",
            20,
        );
    }
    // The kernel keeps names and attributes for a minute, and is told when
    // another node changes them: node 2 has looked at both files, node 1
    // makes one longer and removes the other; node 2's stat and lookup
    // follow within seconds, not after the minute.
    c.sh(2, "stat /etc/pve/storage.cfg /etc/pve/datacenter.cfg");
    let longer = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,backup\n";
    write(&c, 1, "storage.cfg", longer).unwrap();
    c.sh(1, "rm /etc/pve/datacenter.cfg");
    c.wait_for(
        2,
        "node1's longer storage.cfg in node 2's stat",
        &format!("test $(stat -c %s /etc/pve/storage.cfg) = {}", longer.len()),
        10,
    );
    c.wait_for(
        2,
        "node1's removal in node 2's lookup",
        "! test -e /etc/pve/datacenter.cfg",
        10,
    );
    write(&c, 3, "datacenter.cfg", "keyboard: de\n").unwrap();
    c.wait_for(
        2,
        "datacenter.cfg again",
        "grep -q 'keyboard: de' /etc/pve/datacenter.cfg",
        10,
    );
    // Duplicate VMIDs are refused cluster-wide.
    c.sh(2, "mkdir -p /etc/pve/nodes/testnode2/qemu-server");
    assert!(write(&c, 2, "nodes/testnode2/qemu-server/100.conf", "x\n").is_err());
    // The databases agree.
    let dump = |id: u32| {
        let out = c.sh(id, "sqlite3 /var/lib/pve-cluster/config.db 'select inode,parent,version,writer,mtime,type,name,hex(data) from tree where inode != 0 order by inode'");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A corosync.conf change (as PVE makes it: write .new, rename) reaches
    // every host's /etc/corosync, and the originating node reloads corosync.
    let conf = read(&c, 1, "corosync.conf").unwrap();
    let bumped = conf
        .replace("config_version: 1", "config_version: 2")
        .replace("token: 1000", "token: 1100");
    write(&c, 1, "corosync.conf.new", &bumped).unwrap();
    assert!(c
        .sh(1, "mv /etc/pve/corosync.conf.new /etc/pve/corosync.conf")
        .status
        .success());
    for id in 1..=3 {
        c.wait_for(
            id,
            "the new corosync.conf in /etc/corosync",
            "grep -q 'config_version: 2' /etc/corosync/corosync.conf",
            30,
        );
        let mode =
            String::from_utf8_lossy(&c.sh(id, "stat -c %a /etc/corosync/corosync.conf").stdout)
                .trim()
                .to_string();
        assert_eq!(mode, "644");
    }
    c.wait_for(
        1,
        "corosync reloaded",
        "corosync-cmapctl -g totem.token | grep -q 1100",
        30,
    );
    let d1 = dump(1);
    assert!(d1.contains("storage.cfg"));
    assert_eq!(dump(2), d1);
    assert_eq!(dump(3), d1);

    // PVE's join procedure on node 3: stop, delete config.db, start. The
    // new process starts on a new database (corosync.conf imported) and
    // is brought up to date; its recording goes on in the same file.
    c.stop_pmxcfs(3);
    assert!(c
        .sh(3, "rm /var/lib/pve-cluster/config.db*")
        .status
        .success());
    c.start_pmxcfs(3);
    c.wait_for(
        3,
        "the tree after the new database",
        "grep -q 'keyboard: de' /etc/pve/datacenter.cfg",
        60,
    );
    wait_same_tree(&c, 1, 3);

    // Our own traffic, recorded natively, replays through the core exactly
    // as C recordings do: the same sends, the same databases.
    for id in 1..=3 {
        c.stop_pmxcfs(id);
    }
    let scenario = c.base.join("scenario");
    cluster::collect_scenario(&c, &scenario);
    let reports = pmxcfs_compat::check::check_scenario(&scenario).unwrap();
    assert!(
        reports[2]
            .notes
            .iter()
            .any(|n| n.contains("started on a new database")),
        "{:?}",
        reports[2].notes
    );
    for r in &reports {
        assert!(r.sends_total > 5, "{}: {} sends", r.node, r.sends_total);
        assert!(
            r.ok(),
            "{}: {}/{} sends, final state {}: {:?}",
            r.node,
            r.sends_matched,
            r.sends_total,
            r.final_state_matched,
            r.problems
        );
    }
}

const QUORATE: &str = "grep -q '\"quorate\": 1' /etc/pve/.members";
const NOT_QUORATE: &str = "grep -q '\"quorate\": 0' /etc/pve/.members";
/// What PVE's check_cfs_quorum looks at: the owner-write bit of `local`.
const READ_ONLY: &str = "test $(stat -c %a /etc/pve/local) = 555";

#[test]
fn partition_minority_is_read_only_and_heal_converges() {
    require_root();
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::formed("p", 3);
    write(&c, 1, "before.cfg", "before\n").unwrap();
    c.sh(1, "mkdir -p /etc/pve/nodes/testnode3");
    c.wait_for(3, "the first write", "test -e /etc/pve/before.cfg", 20);
    // A shell working in /etc/pve on node 3 keeps its path when the kernel
    // is told that every mode changed (quorum lost).
    let shell = c
        .command(3, "sh")
        .args([
            "-c",
            "cd /etc/pve/nodes/testnode3 || exit 1; \
             until grep -q '\"quorate\": 0' /etc/pve/.members; do sleep 0.1; done; \
             sleep 1; /bin/pwd",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.cut(3);
    c.wait_for(3, "losing quorum", NOT_QUORATE, 60);
    c.wait_for(1, "keeping quorum", QUORATE, 60);
    // The minority refuses writes (EACCES) and shows read-only modes.
    let err = write(&c, 3, "minority.cfg", "x\n").unwrap_err();
    assert!(err.contains("Permission denied"), "{err}");
    let mode = String::from_utf8_lossy(&c.sh(3, "stat -c %a /etc/pve/before.cfg").stdout)
        .trim()
        .to_string();
    assert_eq!(mode, "440");
    let pwd = shell.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&pwd.stdout).trim(),
        "/etc/pve/nodes/testnode3",
        "{}",
        String::from_utf8_lossy(&pwd.stderr)
    );
    // The majority still writes.
    write(&c, 1, "majority.cfg", "y\n").unwrap();
    c.wait_for(
        2,
        "the majority's write",
        "test -e /etc/pve/majority.cfg",
        20,
    );
    c.heal(3);
    c.wait_for(3, "quorum again", QUORATE, 60);
    c.wait_for(3, "catching up", "grep -q y /etc/pve/majority.cfg", 60);
    assert!(read(&c, 1, "minority.cfg").is_none());
    write(&c, 3, "after.cfg", "z\n").unwrap();
    c.wait_for(
        1,
        "writes from the healed node",
        "test -e /etc/pve/after.cfg",
        20,
    );
}

#[test]
fn a_stopped_node_catches_up_and_a_killed_writer_loses_nothing() {
    require_root();
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::formed("k", 3);
    // Stopped node misses changes, then catches up as follower.
    c.stop_pmxcfs(3);
    write(&c, 1, "while-down.cfg", "missed\n").unwrap();
    c.start_pmxcfs(3);
    c.wait_for(
        3,
        "catch-up after restart",
        "grep -q missed /etc/pve/while-down.cfg",
        60,
    );

    // A node with a newer version rejoins: its tree wins. Nodes 2 and 3
    // stop; node 1 (still quorate: the corosyncs run) writes; it stops;
    // 2 and 3 come back together, older; then node 1 rejoins and leads.
    c.stop_pmxcfs(2);
    c.stop_pmxcfs(3);
    write(&c, 1, "newer.cfg", "from the newer node\n").unwrap();
    c.stop_pmxcfs(1);
    c.start_pmxcfs(2);
    c.start_pmxcfs(3);
    c.wait_for(
        3,
        "2 and 3 synced",
        "test $(grep -c '\"online\": 1' /etc/pve/.members) -eq 2",
        60,
    );
    assert!(read(&c, 3, "newer.cfg").is_none());
    c.start_pmxcfs(1);
    for id in [2, 3] {
        c.wait_for(
            id,
            "the newer node's tree",
            "grep -q 'from the newer node' /etc/pve/newer.cfg",
            60,
        );
    }

    // kill -9 of a daemon during a write storm on it, at a few points:
    // every write that returned success is in the killed node's config.db
    // before it syncs with anyone, and on every node afterwards.
    for (round, after_ms) in [450u64, 900].into_iter().enumerate() {
        let script = format!(
            "for i in $(seq 1 400); do echo $i > /etc/pve/storm{round}-$i || exit 0; echo $i >> /run/acked{round}; done"
        );
        let storm = c.command(2, "sh").args(["-c", &script]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(after_ms));
        c.kill_pmxcfs(2);
        let _ = storm.wait_with_output();
        let acked: Vec<String> =
            String::from_utf8_lossy(&c.sh(2, &format!("cat /run/acked{round}")).stdout)
                .lines()
                .map(String::from)
                .collect();
        assert!(
            acked.len() > 5,
            "too few writes before the kill: {}",
            acked.len()
        );
        let on_disk = String::from_utf8_lossy(
            &c.sh(
                2,
                &format!("sqlite3 /var/lib/pve-cluster/config.db \"select name || '=' || data from tree where name like 'storm{round}-%'\""),
            )
            .stdout,
        )
        .into_owned();
        for i in &acked {
            assert!(
                on_disk
                    .lines()
                    .any(|l| l == format!("storm{round}-{i}={i}")),
                "storm{round}-{i} not in the killed node's config.db"
            );
        }
        c.start_pmxcfs(2);
        for id in 1..=3 {
            c.wait_for(
                id,
                "synced after the restart",
                "test $(grep -c '\"online\": 1' /etc/pve/.members) -eq 3",
                60,
            );
            for i in &acked {
                c.wait_for(
                    id,
                    &format!("acknowledged storm{round}-{i}"),
                    &format!("grep -qx {i} /etc/pve/storm{round}-{i}"),
                    30,
                );
            }
        }
    }
}

#[test]
fn corosync_restart_and_daemon_started_before_corosync() {
    require_root();
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("r", 3);
    // Node 3's daemon starts before its corosync, as the C unit does.
    c.start_corosync(1);
    c.start_corosync(2);
    for id in 1..=2 {
        c.wait_quorate(id);
    }
    c.start_pmxcfs(1);
    c.start_pmxcfs(2);
    c.start_pmxcfs(3);
    c.wait_for(3, "read-only without corosync", READ_ONLY, 20);
    c.start_corosync(3);
    for id in 1..=3 {
        c.wait_for(
            id,
            "3 members online",
            "test $(grep -c '\"online\": 1' /etc/pve/.members) -eq 3",
            60,
        );
    }
    write(&c, 3, "late.cfg", "late\n").unwrap();
    c.wait_for(1, "the late node's write", "test -e /etc/pve/late.cfg", 20);

    // corosync goes away under a running daemon and comes back.
    c.stop_corosync(2);
    c.wait_for(2, "read-only while corosync is down", READ_ONLY, 30);
    write(&c, 1, "during-outage.cfg", "o\n").unwrap();
    c.start_corosync(2);
    c.wait_for(2, "quorum again", QUORATE, 60);
    c.wait_for(2, "resynced", "grep -q o /etc/pve/during-outage.cfg", 60);
    write(&c, 2, "after-outage.cfg", "a\n").unwrap();
    c.wait_for(3, "writes again", "test -e /etc/pve/after-outage.cfg", 20);
    assert!(
        c.log(2)
            .contains("[dcdb] crit: cpg_dispatch failed: CS_ERR_LIBRARY"),
        "{}",
        c.log(2)
    );
    // What the metrics of node 2 say of it: the reconnect, the syncs (the
    // formation and the resync), the other nodes' changes, the leave.
    c.wait_metrics(2, "the outage counted", |m| {
        m("pmxcfs_corosync_reconnects_total{group=\"dcdb\"}") >= 1.0
            && m("pmxcfs_sync_rounds_total{group=\"dcdb\"}") >= 2.0
            && m("pmxcfs_sync_duration_seconds_count{group=\"dcdb\"}") >= 2.0
            && m("pmxcfs_changes_applied_total{origin=\"remote\"}") >= 1.0
            && m("pmxcfs_changes_applied_total{origin=\"local\"}") >= 1.0
            && m("pmxcfs_messages_received_total{group=\"dcdb\",kind=\"normal\"}") >= 2.0
            && m("pmxcfs_messages_sent_total{group=\"dcdb\",kind=\"state\"}") >= 2.0
            && m("pmxcfs_group_mode{group=\"dcdb\",mode=\"synced\"}") == 1.0
            && m("pmxcfs_node_online{nodeid=\"3\",node=\"testnode3\"}") == 1.0
            && m("pmxcfs_queued_messages{group=\"dcdb\"}") == 0.0
    });
}

/// The tree of a node's config.db, row by row (without the version row).
fn tree_dump(c: &Cluster, id: u32) -> String {
    let out = c.sh(id, "sqlite3 /var/lib/pve-cluster/config.db 'select inode,parent,version,writer,mtime,type,name,hex(data) from tree where inode != 0 order by inode'");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_same_tree(c: &Cluster, a: u32, b: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while tree_dump(c, a) != tree_dump(c, b) {
        assert!(
            std::time::Instant::now() < deadline,
            "config.db of node {a} and node {b} differ:\n{}\n{}\n{}",
            tree_dump(c, a),
            tree_dump(c, b),
            c.log(a)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_full_disk_on_one_node_loses_nothing_acknowledged_and_heals() {
    require_root();
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("d", 3);
    // Node 2 keeps its database on a small file system of its own.
    assert!(c
        .sh(
            2,
            "mkdir -p /var/lib/pve-cluster && mount -t tmpfs -o size=3m tmpfs /var/lib/pve-cluster"
        )
        .status
        .success());
    c.start_all();
    for id in 1..=3 {
        c.wait_for(
            id,
            "3 members online",
            "test $(grep -c '\"online\": 1' /etc/pve/.members) -eq 3",
            60,
        );
    }
    write(&c, 1, "before.cfg", "before\n").unwrap();
    c.wait_for(2, "the first write", "test -e /etc/pve/before.cfg", 20);
    // Full but for a few pages: some writes still fit, then none.
    c.sh(
        2,
        "avail=$(df --output=avail -k /var/lib/pve-cluster | tail -n 1); dd if=/dev/zero of=/var/lib/pve-cluster/filler bs=1k count=$((avail - 48)) >/dev/null 2>&1; true",
    );
    // Writes on the full node: each one succeeds (and is on its disk) or
    // fails with an error; none hangs.
    let storm = c.sh(
        2,
        "for i in $(seq 1 150); do { head -c 3000 /dev/zero > /etc/pve/full$i; } 2>>/run/errors && echo $i >> /run/acked; done; true",
    );
    assert!(storm.status.success());
    let errors = String::from_utf8_lossy(&c.sh(2, "cat /run/errors").stdout).into_owned();
    assert!(!errors.is_empty(), "the full disk never refused a write");
    assert!(
        errors.lines().all(|l| l.contains("Input/output error")),
        "{errors}"
    );
    let acked: Vec<String> = String::from_utf8_lossy(&c.sh(2, "cat /run/acked").stdout)
        .lines()
        .map(String::from)
        .collect();
    assert!(
        !acked.is_empty(),
        "no write fitted before the disk was full"
    );
    // The others carry on.
    write(&c, 1, "while-full.cfg", "carry on\n").unwrap();
    c.wait_for(
        3,
        "the others' writes",
        "grep -q 'carry on' /etc/pve/while-full.cfg",
        20,
    );
    let log = c.log(2);
    assert!(
        log.contains("[database] crit: commit transaction failed: database or disk is full#010"),
        "{log}"
    );
    assert!(log.contains("[dcdb] crit: cannot write config.db"), "{log}");
    // Space again: the node notices, reloads its database, rejoins and
    // catches up, without a restart.
    c.sh(2, "rm /var/lib/pve-cluster/filler");
    c.wait_for(
        2,
        "catching up",
        "grep -q 'carry on' /etc/pve/while-full.cfg",
        60,
    );
    assert!(c
        .log(2)
        .contains("[database] notice: config.db takes writes again"));
    write(&c, 2, "after.cfg", "after\n").unwrap();
    c.wait_for(
        1,
        "the healed node's write",
        "test -e /etc/pve/after.cfg",
        20,
    );
    wait_same_tree(&c, 1, 2);
    wait_same_tree(&c, 3, 2);
    // Every write the full node acknowledged is in its config.db.
    c.kill_pmxcfs(2);
    let on_disk = String::from_utf8_lossy(
        &c.sh(
            2,
            "sqlite3 /var/lib/pve-cluster/config.db \"select name from tree where name like 'full%' or name in ('after.cfg', 'while-full.cfg')\"",
        )
        .stdout,
    )
    .into_owned();
    for i in &acked {
        assert!(
            on_disk.lines().any(|l| l == format!("full{i}")),
            "full{i} not on disk"
        );
    }
    assert!(on_disk.lines().any(|l| l == "after.cfg"));
    c.start_pmxcfs(2);
    c.wait_for(
        2,
        "synced after the restart",
        "test $(grep -c '\"online\": 1' /etc/pve/.members) -eq 3",
        60,
    );
    wait_same_tree(&c, 1, 2);
}

#[test]
fn locks_are_exclusive_and_abandoned_ones_expire() {
    require_root();
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("l", 3);
    // The test option only shortens C's 120 s; the rule is the same.
    c.extra_args = vec!["--test-lock-timeout".into(), "4".into()];
    c.start_all();
    for id in 1..=3 {
        c.wait_for(
            id,
            "3 members online",
            "test $(grep -c '\"online\": 1' /etc/pve/.members) -eq 3",
            60,
        );
    }
    assert!(c.sh(1, "mkdir -p /etc/pve/priv/lock").status.success());
    c.wait_for(3, "priv/lock", "test -d /etc/pve/priv/lock", 20);
    // Exclusive: one mkdir wins, the others get EEXIST.
    assert!(c
        .sh(2, "mkdir /etc/pve/priv/lock/abandoned")
        .status
        .success());
    let other = c.sh(3, "mkdir /etc/pve/priv/lock/abandoned");
    assert!(String::from_utf8_lossy(&other.stderr).contains("File exists"));
    // A lock is refreshed only by its owner, forward.
    assert!(!c
        .sh(3, "touch /etc/pve/priv/lock/abandoned")
        .status
        .success());
    // Node 3 waits the way PVE's cfs_lock does (utime 0,0, then mkdir;
    // `touch -c`: utime never creates, a plain touch would make a file of
    // the name once the lock is gone);
    // the lowest node (1) releases the lock once it is older than the
    // timeout on its clock, and node 3 gets it.
    let waiter = "for i in $(seq 1 40); do \
        touch -c -d @0 /etc/pve/priv/lock/abandoned 2>/dev/null; \
        mkdir /etc/pve/priv/lock/abandoned 2>/dev/null && exit 0; sleep 0.5; done; exit 1";
    let t = std::time::Instant::now();
    assert!(
        c.sh(3, waiter).status.success(),
        "node 3 never got the lock\n{}",
        c.log(1)
    );
    assert!(
        t.elapsed() >= std::time::Duration::from_secs(3),
        "released too early: {:?}",
        t.elapsed()
    );
    assert!(c.log(1).contains("TEST OPTION"));
    // Released: node 3 holds it now, node 2 cannot take it.
    assert!(!c
        .sh(2, "mkdir /etc/pve/priv/lock/abandoned")
        .status
        .success());
    assert!(c
        .sh(3, "rmdir /etc/pve/priv/lock/abandoned")
        .status
        .success());
}
