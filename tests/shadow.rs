//! `pmxcfs-replay shadow` on a real cluster's traffic, the way the runbook
//! has an operator take it: three nodes of our daemon on real corosync with
//! encryption; node 2's pmxcfs and corosync are stopped, its config.db is
//! copied, tcpdump starts on the bridge, node 2 starts again, and the
//! cluster works: writes on every node, a lock taken, waited for and
//! released, node 3 restarted, node 2 cut off and healed, a corosync.conf
//! change. Shadowing node 2 from its snapshot must match everything; the
//! snapshot of another node, an older snapshot, a cut capture and a wrong
//! key must not.

mod cluster;

use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cluster::{authkey, read, require_root, write, Cluster};
use pmxcfs_compat::knet::DEFAULT_PORTS;
use pmxcfs_compat::shadow::{self, Options, Report, StartDb};

/// tcpdump, stopped by its PID (also when the test fails).
struct Tcpdump(Child);

impl Tcpdump {
    /// `command`: tcpdump in the bridge's namespace or in a node's.
    fn start(mut command: std::process::Command, file: &Path) -> Tcpdump {
        let child = command
            .args(["-i", "any", "-U", "-s", "0", "-w"])
            .arg(file)
            .args(["udp", "portrange", "5405-5412"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump");
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::metadata(file).map(|m| m.len()).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "tcpdump did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Tcpdump(child)
    }

    fn stop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        self.stop();
    }
}

/// On a failure, the captures and databases are kept under
/// `target/test-artifacts/` (the cluster's scratch directory goes).
struct KeepOnFailure(std::path::PathBuf);

impl Drop for KeepOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let to = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-artifacts")
            .join(format!("shadow-{}", std::process::id()));
        let _ = fs::create_dir_all(&to);
        for f in ["cap.pcap", "node2.pcap", "node2.db", "node1.db", "older.db"] {
            let _ = fs::copy(self.0.join(f), to.join(f));
        }
        eprintln!("captures and databases kept in {}", to.display());
    }
}

const ONLINE3: &str = "test $(grep -c '\"online\": 1' /etc/pve/.members) -eq 3";
const QUORATE: &str = "grep -q '\"quorate\": 1' /etc/pve/.members";
const NOT_QUORATE: &str = "grep -q '\"quorate\": 0' /etc/pve/.members";

fn wait_everywhere(c: &Cluster, what: &str, test: &str) {
    for id in 1..=3 {
        c.wait_for(id, what, test, 60);
    }
}

/// A consistent copy of a node's database, as the runbook takes it
/// (sqlite3's online backup also holds what is still in the WAL).
fn backup(c: &Cluster, id: u32, to: &Path) {
    let out = c.sh(
        id,
        &format!(
            "sqlite3 /var/lib/pve-cluster/config.db \".backup '{}'\"",
            to.display()
        ),
    );
    assert!(
        out.status.success(),
        "backup of node {id}'s config.db: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn shadow_of(capture: &Path, key: &[u8], db: &Path, node: u32) -> Result<Report, String> {
    let rows = pmxcfs::database::Database::read(db)
        .map_err(|e| e.to_string())?
        .expect("a snapshot with rows");
    let mut reader = std::io::BufReader::new(fs::File::open(capture).unwrap());
    shadow::run(
        &mut reader,
        vec![key.to_vec()],
        DEFAULT_PORTS,
        Options {
            node,
            start_db: StartDb::Snapshot(rows),
            corosync_conf: None,
            node_ip: None,
        },
        &mut |_| {},
    )
}

#[test]
fn shadow_of_a_replaced_node_matches_its_own_run_and_nothing_else() {
    require_root();
    let key = authkey(0x6c07_8965);
    let mut c = Cluster::new_with(
        "sd",
        3,
        "  crypto_cipher: aes256\n  crypto_hash: sha256\n",
        Some(&key),
    );
    c.start_all();
    wait_everywhere(&c, "3 members online", ONLINE3);
    let base = c.base.clone();
    let _keep = KeepOnFailure(base.clone());

    // Some history before the snapshot.
    write(&c, 1, "storage.cfg", "dir: local\n\tpath /var/lib/vz\n").unwrap();
    assert!(c
        .sh(
            1,
            "mkdir -p /etc/pve/nodes/testnode1/qemu-server /etc/pve/priv/lock"
        )
        .status
        .success());
    write(&c, 3, "datacenter.cfg", "keyboard: de\n").unwrap();
    wait_everywhere(
        &c,
        "the first writes",
        "test -e /etc/pve/datacenter.cfg && test -d /etc/pve/priv/lock",
    );
    // An older snapshot of node 2 (a negative case below).
    backup(&c, 2, &base.join("older.db"));
    write(&c, 1, "before-stop.cfg", "one\n").unwrap();
    c.wait_for(
        2,
        "the write before the stop",
        "test -e /etc/pve/before-stop.cfg",
        30,
    );

    // The runbook: stop pve-cluster and corosync, copy config.db.
    c.stop_pmxcfs(2);
    c.stop_corosync(2);
    backup(&c, 2, &base.join("node2.db"));
    // The cluster goes on without node 2 (its catch-up is in the capture);
    // node 1's database is now newer than node 2's snapshot.
    c.wait_for(
        1,
        "node 2 gone",
        "test $(grep -c '\"online\": 1' /etc/pve/.members) -eq 2",
        60,
    );
    write(&c, 1, "while-down.cfg", "two\n").unwrap();
    backup(&c, 1, &base.join("node1.db"));

    // tcpdump, then corosync and pve-cluster on node 2 again. The runbook
    // captures on the node itself (it sees every mcast, and the tokens it
    // passes on); a switch's mirror port sees everything.
    let capture = base.join("cap.pcap");
    let mut tcpdump = Tcpdump::start(c.bridge_command("tcpdump"), &capture);
    let on_node = base.join("node2.pcap");
    let mut tcpdump_on_node = Tcpdump::start(c.command(2, "tcpdump"), &on_node);
    c.start_corosync(2);
    c.wait_quorate(2);
    c.start_pmxcfs(2);
    wait_everywhere(&c, "3 members online again", ONLINE3);
    c.wait_for(2, "the catch-up", "grep -q two /etc/pve/while-down.cfg", 60);

    // Work on every node.
    write(&c, 1, "from1.cfg", "a\n").unwrap();
    write(&c, 2, "from2.cfg", "b\n").unwrap();
    write(&c, 3, "from3.cfg", "c\n").unwrap();
    assert!(c
        .sh(2, "mkdir -p /etc/pve/nodes/testnode2/qemu-server && printf 'memory: 512\\n' > /etc/pve/nodes/testnode2/qemu-server/101.conf")
        .status
        .success());
    assert!(c
        .sh(3, "mv /etc/pve/from3.cfg /etc/pve/renamed3.cfg")
        .status
        .success());
    assert!(c.sh(1, "rm /etc/pve/before-stop.cfg").status.success());
    wait_everywhere(
        &c,
        "the work of every node",
        "test -e /etc/pve/from1.cfg && test -e /etc/pve/from2.cfg && test -e /etc/pve/renamed3.cfg && test -e /etc/pve/nodes/testnode2/qemu-server/101.conf && ! test -e /etc/pve/before-stop.cfg",
    );
    // A lock: node 2 takes it, node 3 waits for it the way PVE does
    // (utime 0, an UNLOCK_REQUEST), node 2 releases it.
    assert!(c
        .sh(2, "mkdir /etc/pve/priv/lock/shadow-test")
        .status
        .success());
    c.wait_for(3, "the lock", "test -d /etc/pve/priv/lock/shadow-test", 30);
    assert!(!c
        .sh(3, "mkdir /etc/pve/priv/lock/shadow-test")
        .status
        .success());
    let _ = c.sh(3, "touch -d @0 /etc/pve/priv/lock/shadow-test");
    assert!(c
        .sh(2, "rmdir /etc/pve/priv/lock/shadow-test")
        .status
        .success());
    wait_everywhere(
        &c,
        "the lock released",
        "! test -e /etc/pve/priv/lock/shadow-test",
    );

    // Node 3 restarts (corosync and pmxcfs).
    c.stop_pmxcfs(3);
    c.stop_corosync(3);
    write(&c, 2, "node3-down.cfg", "d\n").unwrap();
    c.start_corosync(3);
    c.wait_quorate(3);
    c.start_pmxcfs(3);
    wait_everywhere(&c, "3 members online after node 3's restart", ONLINE3);
    c.wait_for(
        3,
        "node 3's catch-up",
        "test -e /etc/pve/node3-down.cfg",
        60,
    );

    // Node 2 is cut off, the majority writes, the cut heals.
    c.cut(2);
    c.wait_for(2, "node 2 losing quorum", NOT_QUORATE, 60);
    c.wait_for(1, "the majority keeping quorum", QUORATE, 60);
    write(&c, 1, "during-cut.cfg", "e\n").unwrap();
    c.heal(2);
    c.wait_for(2, "quorum again", QUORATE, 60);
    c.wait_for(
        2,
        "the majority's write",
        "grep -q e /etc/pve/during-cut.cfg",
        60,
    );
    wait_everywhere(&c, "3 members online after the heal", ONLINE3);

    // A corosync.conf change, as PVE makes it.
    let conf = read(&c, 1, "corosync.conf").unwrap();
    let bumped = conf.replace("config_version: 1", "config_version: 2");
    write(&c, 1, "corosync.conf.new", &bumped).unwrap();
    assert!(c
        .sh(1, "mv /etc/pve/corosync.conf.new /etc/pve/corosync.conf")
        .status
        .success());
    wait_everywhere(
        &c,
        "the new corosync.conf",
        "grep -q 'config_version: 2' /etc/corosync/corosync.conf",
    );
    write(&c, 2, "last.cfg", "f\n").unwrap();
    wait_everywhere(&c, "the last write", "test -e /etc/pve/last.cfg");
    // Let the last messages settle, then stop the capture.
    std::thread::sleep(Duration::from_secs(2));
    tcpdump.stop();
    tcpdump_on_node.stop();

    // Node 2's own run: everything matches.
    let report = shadow_of(&capture, &key, &base.join("node2.db"), 2).unwrap();
    let text = report.text();
    assert!(report.ok(), "{text}");
    assert!(text.ends_with(": MATCH\n"), "{text}");
    for kind in [
        "dcdb STATE",
        "dcdb NORMAL/WRITE",
        "dcdb NORMAL/MKDIR",
        "dcdb NORMAL/CREATE",
        "kvstore STATE",
    ] {
        assert!(
            report.messages.get(kind).is_some_and(|t| t.total > 0),
            "no {kind} checked:\n{text}"
        );
    }
    // Node 3's restart and the heal: STATEs of nodes in sync with node 2.
    assert!(
        report
            .states
            .get("STATE of a node in sync with ours")
            .is_some_and(|t| t.total >= 2),
        "{text}"
    );
    assert_eq!(report.processes.len(), 1, "{text}");
    // The cut: node 2 was alone, in a ring the wire never shows.
    assert!(text.contains("was cut off from the others"), "{text}");
    // The same from the capture taken on node 2 itself.
    let local = shadow_of(&on_node, &key, &base.join("node2.db"), 2).unwrap();
    assert!(local.ok(), "{}", local.text());
    assert_eq!(local.messages, report.messages, "{}", local.text());

    // Another node's snapshot (newer than node 2's): its first STATE differs.
    let other = shadow_of(&capture, &key, &base.join("node1.db"), 2).unwrap();
    assert!(!other.ok(), "{}", other.text());
    let first = &other.divergences[0];
    assert!(first.what.contains("STATE"), "{}", other.text());
    assert!(other.text().ends_with(": DIVERGED\n"));
    // An older snapshot of node 2.
    let older = shadow_of(&capture, &key, &base.join("older.db"), 2).unwrap();
    assert!(!older.ok(), "{}", older.text());
    assert!(
        older.divergences[0].what.contains("STATE"),
        "{}",
        older.text()
    );
    // A capture cut in the middle.
    let bytes = fs::read(&capture).unwrap();
    let cut = base.join("cut.pcap");
    fs::write(&cut, &bytes[..bytes.len() / 2 + 7]).unwrap();
    let cut_report = shadow_of(&cut, &key, &base.join("node2.db"), 2).unwrap();
    assert!(!cut_report.ok(), "{}", cut_report.text());
    assert!(
        cut_report.problems.iter().any(|p| p.contains("cut short")),
        "{}",
        cut_report.text()
    );
    // A wrong key.
    let wrong = shadow_of(&capture, &[7u8; 256], &base.join("node2.db"), 2).unwrap_err();
    assert!(wrong.contains("no packet authenticates"), "{wrong}");
    drop(tcpdump);
    drop(tcpdump_on_node);
}
