//! The runbook (docs/runbook.md), run as written: its `# step:` blocks, in its
//! order, on a 3-node cluster in namespaces whose nodes run a stand-in
//! pve-cluster package (its /usr/bin/pmxcfs is a working daemon, started
//! as pve-cluster.service starts it). Every node is replaced with the
//! packaged daemon, one after the other, the cluster staying quorate and
//! writable; then one is rolled back.
//!
//! No systemd runs here: `systemctl` on the nodes is a stand-in that does
//! for pve-cluster.service and corosync.service what systemd does with
//! their units (Type=forking: ExecStart and its parent's exit status;
//! Type=notify: the process in the background, ready when corosync
//! answers; stop: ExecStop, else SIGTERM to the main pid, SIGKILL after
//! TimeoutStopSec).

mod cluster;
#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use cluster::{read, write, Cluster};
use common::debian::{deb, stand_in_pve_cluster};

const SYSTEMCTL: &str = r#"#!/bin/sh
# Test stand-in for systemctl (no systemd in the test namespaces): what
# systemd does for a Type=forking unit with a PIDFile, and for corosync's
# Type=notify unit.
set -e
name=${2%.service}
unit=/lib/systemd/system/$name.service
[ -f "$unit" ] || { echo "Unit ${2} not found." >&2; exit 5; }
exec_start=$(sed -n 's/^ExecStart=//p' "$unit" | sed 's/ \$[A-Z_]*//g')
exec_stop=$(sed -n 's/^ExecStop=//p' "$unit")
type=$(sed -n 's/^Type=//p' "$unit")
pidfile=$(sed -n 's/^PIDFile=//p' "$unit")
[ -n "$pidfile" ] || pidfile=/run/$name.stand-in.pid
timeout=$(sed -n 's/^TimeoutStopSec=//p' "$unit")
[ -n "$timeout" ] || timeout=90
start() {
    if [ "$type" = forking ]; then
        $exec_start
        return
    fi
    $exec_start >/dev/null 2>&1 &
    echo $! > "$pidfile"
    # Ready: the stand-in knows corosync's readiness only.
    i=0
    until corosync-cfgtool -s >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -lt 300 ] || { echo "$name did not get ready" >&2; exit 1; }
        sleep 0.1
    done
}
stop() {
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 0
    if [ -n "$exec_stop" ]; then
        $exec_stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    else
        kill -TERM "$pid" 2>/dev/null || return 0
    fi
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt $((timeout * 10)) ]; then kill -KILL "$pid"; break; fi
        sleep 0.1
    done
}
case "$1" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    *) echo "systemctl stand-in: '$1' is not supported" >&2; exit 1 ;;
esac
"#;

/// The `# step:` blocks of docs/runbook.md, by name.
fn runbook() -> BTreeMap<String, String> {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbook.md")).unwrap();
    let start = readme
        .find("## Replacing C nodes: the runbook")
        .expect("the runbook section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut steps = BTreeMap::new();
    for block in section.split("```sh\n").skip(1) {
        let body = block.split("```").next().unwrap();
        let name = body
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# step: "))
            .expect("every runbook block names its step")
            .trim()
            .to_string();
        steps.insert(name, body.to_string());
    }
    steps
}

/// Stops the daemons the stand-in systemctl started, by their pids.
struct Services<'a>(&'a Cluster);

impl Drop for Services<'_> {
    fn drop(&mut self) {
        for id in 1..=3 {
            let _ = self.0.sh(
                id,
                "[ -s /root/shadow-tcpdump.pid ] && kill $(cat /root/shadow-tcpdump.pid); \
                 PATH=/usr/local/sbin:$PATH; systemctl stop pve-cluster; umount -l /etc/pve 2>/dev/null; \
                 systemctl stop corosync; true",
            );
        }
    }
}

fn run_step(c: &Cluster, id: u32, steps: &BTreeMap<String, String>, name: &str) -> String {
    let script = format!(
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\ncd /root\nset -ex\n{}",
        steps[name]
    );
    let out = c.sh(id, &script);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "node {id}, runbook step '{name}' failed:\n{text}"
    );
    text
}

#[test]
fn the_runbook_replaces_every_node_and_rolls_one_back() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "cluster tests need root (namespaces, corosync, /dev/fuse, dpkg)"
    );
    let steps = runbook();
    for step in [
        "shadow-capture",
        "shadow-check",
        "preflight",
        "install",
        "switch",
        "verify",
        "rollback",
    ] {
        assert!(steps.contains_key(step), "the runbook has no step '{step}'");
    }
    let ours = deb("pmxcfs-rs");
    let tools = deb("pmxcfs-rs-tools");
    let c = Cluster::new_for_packages("b", 3);
    let pkgs = c.base.join("packages");
    fs::create_dir_all(&pkgs).unwrap();
    // "The C daemon" of the stand-in pve-cluster: a daemon that runs a node.
    let stand_in = stand_in_pve_cluster(
        &pkgs,
        "9.1.6-1",
        Some(Path::new(env!("CARGO_BIN_EXE_pmxcfs"))),
    );
    fs::copy(&ours, pkgs.join(ours.file_name().unwrap())).unwrap();
    fs::copy(&tools, pkgs.join(tools.file_name().unwrap())).unwrap();
    fs::write(pkgs.join("systemctl"), SYSTEMCTL).unwrap();
    for id in 1..=3 {
        let setup = format!(
            "set -e; install -m 0755 {p}/systemctl /usr/local/sbin/systemctl; cp {p}/*.deb /root/; \
             dpkg -i /root/{s} >/dev/null",
            p = pkgs.display(),
            s = stand_in.file_name().unwrap().to_string_lossy()
        );
        let out = c.sh(id, &setup);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let services = Services(&c);
    for id in 1..=3 {
        let out = c.sh(id, "PATH=/usr/local/sbin:$PATH systemctl start corosync");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for id in 1..=3 {
        c.wait_quorate(id);
    }
    for id in 1..=3 {
        let out = c.sh(id, "PATH=/usr/local/sbin:$PATH systemctl start pve-cluster");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for id in 1..=3 {
        c.wait_for(
            id,
            "3 members online",
            "test $(grep -c '\"online\": 1' /etc/pve/.members) -eq 3",
            60,
        );
    }
    write(&c, 1, "datacenter.cfg", "keyboard: en-us\n").unwrap();

    // Step 0 on node 1: its traffic recorded across a restart of its
    // corosync and "C" pmxcfs, the cluster at work, then checked.
    run_step(&c, 1, &steps, "shadow-capture");
    for id in 1..=3 {
        c.wait_for(
            id,
            "3 members online after the restart",
            "test $(grep -c '\"online\": 1' /etc/pve/.members) -eq 3",
            60,
        );
    }
    for id in 1..=3 {
        write(&c, id, &format!("shadowed-{id}.cfg"), "w\n").unwrap();
    }
    for id in 1..=3 {
        c.wait_for(
            id,
            "every node's write",
            "test -e /etc/pve/shadowed-1.cfg && test -e /etc/pve/shadowed-2.cfg && test -e /etc/pve/shadowed-3.cfg",
            30,
        );
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let shadow = run_step(&c, 1, &steps, "shadow-check");
    assert!(
        shadow.contains("shadow: node 1, messages matched ") && shadow.contains(": MATCH"),
        "{shadow}"
    );

    // One node after the other.
    for id in 1..=3 {
        run_step(&c, id, &steps, "preflight");
        let install = run_step(&c, id, &steps, "install");
        assert!(install.contains("/usr/bin/pmxcfs.distrib"), "{install}");
        assert!(
            install.contains("result: the daemon would start on this database"),
            "{install}"
        );
        run_step(&c, id, &steps, "switch");
        run_step(&c, id, &steps, "verify");
        // Writes cross between replaced and not yet replaced nodes.
        let other = id % 3 + 1;
        write(&c, id, &format!("from-node{id}.cfg"), "x\n").unwrap();
        c.wait_for(
            other,
            "the replaced node's write",
            &format!("test -e /etc/pve/from-node{id}.cfg"),
            20,
        );
        write(&c, other, &format!("to-node{id}.cfg"), "y\n").unwrap();
        c.wait_for(
            id,
            "a write for the replaced node",
            &format!("test -e /etc/pve/to-node{id}.cfg"),
            20,
        );
    }
    assert_eq!(
        read(&c, 3, "datacenter.cfg").as_deref(),
        Some("keyboard: en-us\n"),
        "nothing lost on the way"
    );

    // Roll node 2 back to the stand-in "C" daemon.
    run_step(&c, 2, &steps, "rollback");
    write(&c, 2, "after-rollback.cfg", "z\n").unwrap();
    c.wait_for(
        1,
        "the rolled back node's write",
        "test -e /etc/pve/after-rollback.cfg",
        20,
    );
    for id in 1..=3 {
        assert_eq!(
            read(&c, id, "datacenter.cfg").as_deref(),
            Some("keyboard: en-us\n")
        );
    }
    drop(services);
}
