//! The log of a 3-node cluster on real corosync through the events of
//! log-lines.md (the C daemon's own log): formation, a corosync.conf
//! change, a daemon killed and restarted, corosync stopped and started
//! under a running daemon, a partition and its heal, and the stop. For
//! every node and every event, the notice, info and crit lines of each
//! subsystem must be C's lines, in C's order (pids and epoch counters are
//! normalised: they are the run's own). Node 1 is the lowest node and sync
//! leader, node 2 is killed and restarted, node 3 loses corosync and is
//! cut off.

mod cluster;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cluster::{require_root, write, Cluster};

/// `1/4711` → `1/*`, `(epoch 1/4711/00000003)` → `(epoch 1/*/*)`: a `/`
/// after a number (or a replaced one) and before digits.
fn normalise(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let after_number = out
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_digit() || c == '*');
        if chars[i] == '/' && after_number {
            let n = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_hexdigit())
                .count();
            if n > 0 {
                out.push_str("/*");
                i += 1 + n;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// The notice, info and crit lines of a log part, by subsystem.
fn by_subsystem(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix('[') else {
            continue;
        };
        let Some((subsystem, message)) = rest.split_once("] ") else {
            continue;
        };
        if !["notice:", "info:", "crit:"]
            .iter()
            .any(|l| message.starts_with(l))
        {
            continue;
        }
        out.entry(subsystem.to_string())
            .or_default()
            .push(normalise(&format!("[{subsystem}] {message}")));
    }
    out
}

/// Lines C logs or not depending on timing (a send that corosync asked to
/// retry during a membership change).
fn optional(line: &str) -> bool {
    line.contains("cpg_send_message retried")
}

/// Lines whose place among the others depends on which of corosync's
/// services tells first (C's transcripts show quorum before and after the
/// CPG membership): they must be there, in any place.
fn floating(line: &str) -> bool {
    line.ends_with("node has quorum") || line.ends_with("node lost quorum")
}

/// (the ordered lines, the floating ones sorted).
fn split(lines: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut float, ordered): (Vec<String>, Vec<String>) = lines
        .iter()
        .filter(|l| !optional(l))
        .cloned()
        .partition(|l| floating(l));
    float.sort();
    (ordered, float)
}

struct Events {
    /// Per node: the log offset where the current event began.
    marks: BTreeMap<u32, usize>,
    failures: Vec<String>,
}

impl Events {
    fn new() -> Events {
        Events {
            marks: BTreeMap::new(),
            failures: Vec::new(),
        }
    }

    /// Wait until every expectation's last line is there, then compare
    /// each node's lines of this event with `expected` (node →
    /// lines, as in log-lines.md), and start the next event.
    fn settle(&mut self, c: &Cluster, event: &str, expected: &[(u32, &str)]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for (id, text) in expected {
            let Some(last) = text.lines().map(str::trim).filter(|l| !l.is_empty()).last() else {
                continue;
            };
            loop {
                let part = self.part(c, *id);
                if part.lines().any(|l| normalise(l) == last) {
                    break;
                }
                if Instant::now() > deadline {
                    self.failures
                        .push(format!("{event}: node {id} never logged `{last}`:\n{part}"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Lines that trail the last expected one.
        std::thread::sleep(Duration::from_millis(1500));
        for (id, text) in expected {
            let part = self.part(c, *id);
            let ours = by_subsystem(&part);
            let want = by_subsystem(text);
            for (subsystem, want_lines) in &want {
                let got: Vec<String> = ours.get(subsystem).cloned().unwrap_or_default();
                if split(&got) != split(want_lines) {
                    self.failures.push(format!(
                        "{event}, node {id}, [{subsystem}]:\n  C:    {want_lines:#?}\n  ours: {got:#?}"
                    ));
                }
            }
            for subsystem in ours.keys() {
                if !want.contains_key(subsystem) && ours[subsystem].iter().any(|l| !optional(l)) {
                    self.failures.push(format!(
                        "{event}, node {id}: lines C does not log: {:#?}",
                        ours[subsystem]
                    ));
                }
            }
        }
        for id in 1..=3 {
            self.marks.insert(id, c.log(id).len());
        }
    }

    fn part(&self, c: &Cluster, id: u32) -> String {
        let log = c.log(id);
        log[self.marks.get(&id).copied().unwrap_or(0).min(log.len())..].to_string()
    }
}

#[test]
fn each_node_logs_the_lines_of_c_at_each_event() {
    require_root();
    let mut c = Cluster::new("g", 3);
    let mut events = Events::new();
    c.start_corosync_all();
    let name = c.prefix.clone();
    // Our one line that C does not log (docs/decisions.md: operability).
    let version = env!("CARGO_PKG_VERSION");

    // Formation, one daemon after the other: node 1 is alone first.
    c.start_pmxcfs(1);
    events.settle(
        &c,
        "formation of node 1",
        &[(
            1,
            &format!(
                "[main] notice: starting pmxcfs-rs {version}
                 [main] notice: resolved node name 'testnode1' to '10.99.0.1' for default node IP address
                 [status] notice: update cluster info (cluster name  {name}, version = 1)
                 [status] notice: node has quorum
                 [dcdb] notice: members: 1/*
                 [dcdb] notice: all data is up to date
                 [status] notice: members: 1/*
                 [status] notice: all data is up to date
                 [libqb] info: server name: pve2"
            ),
        )],
    );

    // Node 1 writes alone, so that the others are behind when they join.
    write(&c, 1, "storage.cfg", "dir: local\n").unwrap();
    c.start_pmxcfs(2);
    let joining = |id: u32| {
        format!(
            "[main] notice: starting pmxcfs-rs {version}
             [main] notice: resolved node name 'testnode{id}' to '10.99.0.{id}' for default node IP address
             [status] notice: update cluster info (cluster name  {name}, version = 1)
             [status] notice: node has quorum
             [dcdb] notice: members: {members}
             [dcdb] notice: starting data syncronisation
             [dcdb] notice: received sync request (epoch 1/*/*)
             [dcdb] notice: received all states
             [dcdb] notice: leader is 1/*
             [dcdb] notice: synced members: {synced}
             [dcdb] notice: waiting for updates from leader
             [dcdb] notice: update complete - trying to commit (got 3 inode updates)
             [dcdb] notice: all data is up to date
             [status] notice: members: {members}
             [status] notice: starting data syncronisation
             [status] notice: received sync request (epoch 1/*/*)
             [status] notice: received all states
             [status] notice: all data is up to date
             [libqb] info: server name: pve2",
            members = (1..=id).map(|i| format!("{i}/*")).collect::<Vec<_>>().join(", "),
            synced = (1..id).map(|i| format!("{i}/*")).collect::<Vec<_>>().join(", "),
        )
    };
    let leading = |members: &str, synced: &str, updates: u32| {
        format!(
            "[dcdb] notice: members: {members}
             [dcdb] notice: starting data syncronisation
             [dcdb] notice: received sync request (epoch 1/*/*)
             [dcdb] notice: received all states
             [dcdb] notice: leader is 1/*
             [dcdb] notice: synced members: {synced}
             [dcdb] notice: start sending inode updates
             [dcdb] notice: sent all ({updates}) updates
             [dcdb] notice: all data is up to date
             [status] notice: members: {members}
             [status] notice: starting data syncronisation
             [status] notice: received sync request (epoch 1/*/*)
             [status] notice: received all states
             [status] notice: all data is up to date"
        )
    };
    let following = |members: &str, synced: &str| {
        format!(
            "[dcdb] notice: members: {members}
             [dcdb] notice: starting data syncronisation
             [dcdb] notice: received sync request (epoch 1/*/*)
             [dcdb] notice: received all states
             [dcdb] notice: leader is 1/*
             [dcdb] notice: synced members: {synced}
             [dcdb] notice: all data is up to date
             [status] notice: members: {members}
             [status] notice: starting data syncronisation
             [status] notice: received sync request (epoch 1/*/*)
             [status] notice: received all states
             [status] notice: all data is up to date"
        )
    };
    events.settle(
        &c,
        "node 2 joins",
        &[(1, &leading("1/*, 2/*", "1/*", 3)), (2, &joining(2))],
    );
    c.start_pmxcfs(3);
    events.settle(
        &c,
        "node 3 joins",
        &[
            (1, &leading("1/*, 2/*, 3/*", "1/*, 2/*", 3)),
            (2, &following("1/*, 2/*, 3/*", "1/*, 2/*")),
            (3, &joining(3)),
        ],
    );

    // corosync.conf update, as PVE makes it: write .new, rename.
    let conf = cluster::read(&c, 1, "corosync.conf").unwrap();
    write(
        &c,
        1,
        "corosync.conf.new",
        &conf.replace("config_version: 1", "config_version: 2"),
    )
    .unwrap();
    assert!(c
        .sh(1, "mv /etc/pve/corosync.conf.new /etc/pve/corosync.conf")
        .status
        .success());
    let conf_update = format!(
        "[dcdb] notice: wrote new corosync config '/etc/corosync/corosync.conf' (version = 2)
         [status] notice: update cluster info (cluster name  {name}, version = 2)"
    );
    events.settle(
        &c,
        "corosync.conf update",
        &[(1, &conf_update), (2, &conf_update), (3, &conf_update)],
    );

    // kill -9 node 2, then restart it.
    c.kill_pmxcfs(2);
    events.settle(
        &c,
        "kill -9 node 2",
        &[
            (1, &leading("1/*, 3/*", "1/*, 3/*", 0)),
            (3, &following("1/*, 3/*", "1/*, 3/*")),
        ],
    );
    c.start_pmxcfs(2);
    let restarted = format!(
        "[main] notice: starting pmxcfs-rs {version}
         [main] notice: resolved node name 'testnode2' to '10.99.0.2' for default node IP address
         [status] notice: update cluster info (cluster name  {name}, version = 2)
         [status] notice: node has quorum
         {}
         [libqb] info: server name: pve2",
        following("1/*, 2/*, 3/*", "1/*, 2/*, 3/*")
    );
    events.settle(
        &c,
        "node 2 restarted",
        &[
            (1, &leading("1/*, 2/*, 3/*", "1/*, 2/*, 3/*", 0)),
            (2, &restarted),
            (3, &following("1/*, 2/*, 3/*", "1/*, 2/*, 3/*")),
        ],
    );

    // corosync stopped on node 3, for less than C's 5 s retry gap.
    c.stop_corosync(3);
    let lost = "[confdb] crit: cmap_dispatch failed: 2
        [quorum] crit: quorum_dispatch failed: CS_ERR_LIBRARY
        [status] notice: node lost quorum
        [dcdb] crit: cpg_dispatch failed: CS_ERR_LIBRARY
        [dcdb] crit: cpg_leave failed: CS_ERR_LIBRARY
        [status] crit: cpg_dispatch failed: CS_ERR_LIBRARY
        [status] crit: cpg_leave failed: CS_ERR_LIBRARY
        [quorum] crit: quorum_initialize failed: CS_ERR_LIBRARY (failed to connect to corosync)
        [quorum] crit: can't initialize service
        [confdb] crit: cmap_initialize failed: CS_ERR_LIBRARY (failed to connect to corosync)
        [confdb] crit: can't initialize service
        [dcdb] notice: start cluster connection
        [dcdb] crit: cpg_initialize failed: CS_ERR_LIBRARY (failed to connect to corosync)
        [dcdb] crit: can't initialize service
        [status] notice: start cluster connection
        [status] crit: cpg_initialize failed: CS_ERR_LIBRARY (failed to connect to corosync)
        [status] crit: can't initialize service";
    events.settle(
        &c,
        "corosync stopped on node 3",
        &[
            (1, &leading("1/*, 2/*", "1/*, 2/*", 0)),
            (2, &following("1/*, 2/*", "1/*, 2/*")),
            (3, lost),
        ],
    );
    c.start_corosync(3);
    let back = format!(
        "[status] notice: update cluster info (cluster name  {name}, version = 2)
         [status] notice: node has quorum
         {}",
        following("1/*, 2/*, 3/*", "1/*, 2/*, 3/*")
    );
    events.settle(
        &c,
        "corosync started on node 3",
        &[
            (1, &leading("1/*, 2/*, 3/*", "1/*, 2/*, 3/*", 0)),
            (2, &following("1/*, 2/*, 3/*", "1/*, 2/*, 3/*")),
            (3, &back),
        ],
    );

    // Node 3 cut off, then healed.
    c.cut(3);
    events.settle(
        &c,
        "partition node 3",
        &[
            (1, &leading("1/*, 2/*", "1/*, 2/*", 0)),
            (2, &following("1/*, 2/*", "1/*, 2/*")),
            (
                3,
                "[status] notice: node lost quorum
                 [dcdb] notice: members: 3/*
                 [status] notice: members: 3/*",
            ),
        ],
    );
    c.heal(3);
    let healed = format!(
        "[status] notice: node has quorum
         {}",
        following("1/*, 2/*, 3/*", "1/*, 2/*, 3/*")
    );
    events.settle(
        &c,
        "heal node 3",
        &[
            (1, &leading("1/*, 2/*, 3/*", "1/*, 2/*, 3/*", 0)),
            (2, &following("1/*, 2/*, 3/*", "1/*, 2/*, 3/*")),
            (3, &healed),
        ],
    );

    // Stop all, node 3 first.
    let stopped = "[main] notice: teardown filesystem
        [libqb] info: withdrawing server sockets
        [main] notice: exit proxmox configuration filesystem (0)";
    c.stop_pmxcfs(3);
    c.stop_pmxcfs(2);
    c.stop_pmxcfs(1);
    events.settle(
        &c,
        "stop all",
        &[
            (
                1,
                &format!(
                    "{}
                     [dcdb] notice: members: 1/*
                     [status] notice: members: 1/*
                     {stopped}",
                    leading("1/*, 2/*", "1/*, 2/*", 0)
                ),
            ),
            (
                2,
                &format!("{}\n{stopped}", following("1/*, 2/*", "1/*, 2/*")),
            ),
            (3, stopped),
        ],
    );
    assert!(events.failures.is_empty(), "{}", events.failures.join("\n"));
}
