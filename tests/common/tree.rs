//! Large trees for benchmarks and tests, written straight into a config.db
//! of C's schema (one transaction): PVE's layout (nodes/<node>/qemu-server
//! with guest configs, lxc, priv, a few cluster-wide files), sized by a
//! [`TreeSpec`].

use std::path::Path;

use rusqlite::{params, Connection};

#[derive(Clone, Debug)]
pub struct TreeSpec {
    pub nodes: u32,
    pub guests_per_node: u32,
    /// Size of each guest config.
    pub guest_size: usize,
    /// Files of `big_size` bytes under nodes/<node0>/big.
    pub big_files: u32,
    pub big_size: usize,
}

impl TreeSpec {
    /// About 52 000 files in a 51 MB database, as a large PVE cluster has.
    pub fn large() -> TreeSpec {
        TreeSpec {
            nodes: 20,
            guests_per_node: 2600,
            guest_size: 980,
            big_files: 0,
            big_size: 0,
        }
    }

    /// At C's documented limits: 256 Ki entries (the root included),
    /// 128 MiB of data, 32 files of 1 MiB (the largest a file may be).
    pub fn limits() -> TreeSpec {
        // Entries: root, nodes, per node its dir and qemu-server, big,
        // the 3 cluster-wide files, the big files and the guests.
        let nodes = 64u32;
        let fixed = 1 + 1 + 2 * nodes + 1 + 3 + 32;
        let guests = 262_144 - fixed;
        let guests_per_node = guests / nodes;
        let total = 128u64 * 1024 * 1024 - 32 * 1024 * 1024;
        TreeSpec {
            nodes,
            guests_per_node,
            guest_size: (total / (guests_per_node * nodes) as u64) as usize - 8,
            big_files: 32,
            big_size: 1024 * 1024,
        }
    }
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct Generated {
    /// Entries, the root included (what statfs counts).
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    /// One file's path, the last one written (to wait for at start-up).
    pub last_file: String,
}

/// The bytes of guest `vmid`'s config in a generated tree.
pub fn guest_config(vmid: u32, size: usize) -> Vec<u8> {
    let mut s = format!(
        "boot: order=scsi0;net0\ncores: 2\nmemory: 2048\nname: vm{vmid}\nnet0: virtio=BC:24:11:{:02X}:{:02X}:{:02X},bridge=vmbr0\nostype: l26\nscsi0: local-lvm:vm-{vmid}-disk-0,size=32G\nscsihw: virtio-scsi-single\nsmbios1: uuid=00000000-0000-4000-8000-{vmid:012}\n",
        (vmid >> 16) & 0xff,
        (vmid >> 8) & 0xff,
        vmid & 0xff
    )
    .into_bytes();
    let mut i = 0;
    while s.len() < size {
        s.extend_from_slice(format!("#note{i}: padding for a realistic size\n").as_bytes());
        i += 1;
    }
    s.truncate(size);
    if let Some(last) = s.last_mut() {
        *last = b'\n';
    }
    s
}

/// Writes a new config.db at `path` (which must not exist).
pub fn generate(path: &Path, spec: &TreeSpec) -> Generated {
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE IF NOT EXISTS tree (
           inode INTEGER PRIMARY KEY NOT NULL,
           parent INTEGER NOT NULL CHECK(typeof(parent)=='integer'),
           version INTEGER NOT NULL CHECK(typeof(version)=='integer'),
           writer INTEGER NOT NULL CHECK(typeof(writer)=='integer'),
           mtime INTEGER NOT NULL CHECK(typeof(mtime)=='integer'),
           type INTEGER NOT NULL CHECK(typeof(type)=='integer'),
           name TEXT NOT NULL,
           data BLOB);",
    )
    .unwrap();
    let mtime = 1_700_000_000i64;
    let mut g = Generated::default();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO tree VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7)")
            .unwrap();
        let mut next = 1i64;
        let mut add = |parent: i64, name: &str, data: Option<&[u8]>, g: &mut Generated| -> i64 {
            let inode = next;
            next += 1;
            let kind = if data.is_some() { 8 } else { 4 };
            insert
                .execute(params![inode, parent, inode, mtime, kind, name, data])
                .unwrap();
            g.entries += 1;
            if let Some(d) = data {
                g.files += 1;
                g.bytes += d.len() as u64;
            }
            inode
        };
        let conf = b"totem {\n  cluster_name: big\n}\n".as_slice();
        add(0, "datacenter.cfg", Some(b"keyboard: en-us\n"), &mut g);
        add(
            0,
            "storage.cfg",
            Some(b"dir: local\n\tpath /var/lib/vz\n"),
            &mut g,
        );
        add(0, "user.cfg", Some(conf), &mut g);
        let nodes = add(0, "nodes", None, &mut g);
        let mut vmid = 100u32;
        let mut last = String::new();
        for n in 0..spec.nodes {
            let node_name = format!("node{n}");
            let node = add(nodes, &node_name, None, &mut g);
            let qemu = add(node, "qemu-server", None, &mut g);
            if n == 0 && spec.big_files > 0 {
                let big = add(node, "big", None, &mut g);
                let data = vec![b'b'; spec.big_size];
                for i in 0..spec.big_files {
                    add(big, &format!("blob{i}.bin"), Some(&data), &mut g);
                }
            }
            for _ in 0..spec.guests_per_node {
                let data = guest_config(vmid, spec.guest_size);
                add(qemu, &format!("{vmid}.conf"), Some(&data), &mut g);
                last = format!("nodes/{node_name}/qemu-server/{vmid}.conf");
                vmid += 1;
            }
        }
        let version = next - 1;
        tx.execute(
            "INSERT INTO tree VALUES (0, 0, ?1, 0, ?2, 8, '__version__', NULL)",
            params![version, mtime],
        )
        .unwrap();
        g.entries += 1;
        g.last_file = last;
    }
    tx.commit().unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    g
}
