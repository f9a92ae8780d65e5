//! Cluster mode on real corosync: three nodes in their own namespaces form
//! a cluster, and a write on any node is visible on every node.

mod cluster;

use cluster::{read, write, Cluster};

fn require_root() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "cluster tests need root (network and mount namespaces, corosync, /dev/fuse)"
    );
}

#[test]
fn three_nodes_form_and_replicate_writes() {
    require_root();
    let mut c = Cluster::new("f", 3);
    c.start_all();
    for id in 1..=3 {
        c.wait_for(id, "quorate with 3 members online", "grep -q '\"quorate\": 1' /etc/pve/.members && test $(grep -c '\"online\": 1' /etc/pve/.members) -eq 3", 60);
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
    // Duplicate VMIDs are refused cluster-wide.
    c.sh(2, "mkdir -p /etc/pve/nodes/testnode2/qemu-server");
    assert!(write(&c, 2, "nodes/testnode2/qemu-server/100.conf", "x\n").is_err());
    // The databases agree.
    let dump = |id: u32| {
        let out = c.sh(id, "sqlite3 /var/lib/pve-cluster/config.db 'select inode,parent,version,writer,mtime,type,name,hex(data) from tree where inode != 0 order by inode'");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    c.wait_for(2, "settled", "true", 1);
    let d1 = dump(1);
    assert!(d1.contains("storage.cfg"));
    assert_eq!(dump(2), d1);
    assert_eq!(dump(3), d1);
}
