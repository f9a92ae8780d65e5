//! Writes the fuzz seed corpus `fuzz/seeds/<target>/` from the recorded
//! captures (one message of each kind, and their payloads) and from IPC
//! requests packed as PVE::Cluster packs them.
//!
//! cargo run -p pmxcfs-compat --example fuzz_seeds -- captures fuzz/seeds

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pmxcfs_compat::capture::read_capture;
use pmxcfs_compat::describe::{group_of, Decoded};
use pmxcfs_wire::dfsm::{NORMAL_HEADER_LEN, STATE_HEADER_LEN};
use pmxcfs_wire::ipc::{name_field, Request, RequestBody, Response};
use pmxcfs_wire::{dcdb, kvstore};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (captures, out) = match args.as_slice() {
        [c, o] => (PathBuf::from(c), PathBuf::from(o)),
        _ => {
            eprintln!("usage: fuzz_seeds CAPTURES_DIR OUT_DIR");
            std::process::exit(2);
        }
    };
    let mut seeds: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    let mut add = |target: &str, name: String, bytes: Vec<u8>| {
        seeds.entry((target.to_string(), name)).or_insert(bytes);
    };

    let mut files: Vec<PathBuf> = std::fs::read_dir(&captures)
        .unwrap()
        .flat_map(|d| {
            let d = d.unwrap().path();
            std::fs::read_dir(&d)
                .into_iter()
                .flatten()
                .map(|f| f.unwrap().path())
                .collect::<Vec<_>>()
        })
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.sort();
    for file in &files {
        for record in read_capture(file).unwrap() {
            let event = record.event().unwrap();
            let Some(msg) = event.message() else { continue };
            let decoded = Decoded::decode(group_of(&event.group), msg).unwrap();
            let kind = decoded.kind_name().replace('/', "_").to_lowercase();
            add("dfsm_message", kind.clone(), msg.to_vec());
            match &decoded {
                Decoded::Dcdb(m) => {
                    add("dcdb_message", kind.clone(), msg.to_vec());
                    let normal = &msg[NORMAL_HEADER_LEN.min(msg.len())..];
                    let state = &msg[STATE_HEADER_LEN.min(msg.len())..];
                    match &m.payload {
                        dcdb::Payload::Fuse(_) => add("fuse_message", kind, normal.to_vec()),
                        dcdb::Payload::Unlock(_) => add("unlock_message", kind, normal.to_vec()),
                        dcdb::Payload::Index(_) => add("memdb_index", kind, state.to_vec()),
                        dcdb::Payload::Update(e) => {
                            let name = if e.is_dir() { "dir" } else { "file" };
                            add("tree_entry", format!("{kind}_{name}"), state.to_vec())
                        }
                        _ => {}
                    }
                }
                Decoded::Kvstore(m) => {
                    add("kvstore_message", kind.clone(), msg.to_vec());
                    let normal = &msg[NORMAL_HEADER_LEN.min(msg.len())..];
                    let state = &msg[STATE_HEADER_LEN.min(msg.len())..];
                    match &m.payload {
                        kvstore::Payload::Update(_) => add("kv_update", kind, normal.to_vec()),
                        kvstore::Payload::Log(_) => add("clog_entry", kind, normal.to_vec()),
                        kvstore::Payload::State(b) => {
                            let n = b.entries().map(|e| e.len()).unwrap_or(0);
                            // A ring with several entries exercises the walk.
                            if n >= 2 {
                                add("clog_buffer", kind, state.to_vec())
                            }
                        }
                        _ => {}
                    }
                }
                Decoded::Dfsm(_) => {}
            }
        }
    }

    let requests = [
        ("get_fs_version", RequestBody::GetFsVersion),
        (
            "set_status",
            RequestBody::SetStatus {
                name: name_field(b"tasklist"),
                value: b"{\"a\":1}\0".to_vec(),
            },
        ),
        (
            "get_status",
            RequestBody::GetStatus {
                name: name_field(b"tasklist"),
                nodename: name_field(b"node2"),
                trailing: vec![],
            },
        ),
        (
            "get_config",
            RequestBody::GetConfig {
                path: b"storage.cfg\0".to_vec(),
            },
        ),
        (
            "log_cluster_msg",
            RequestBody::LogClusterMsg {
                priority: 6,
                ident: b"root@pam\0".to_vec(),
                tag: b"tag\0".to_vec(),
                msg: b"hello\0".to_vec(),
            },
        ),
        (
            "get_cluster_log",
            RequestBody::GetClusterLog {
                max_entries: 50,
                reserved: [0; 3],
                user: b"root@pam\0".to_vec(),
            },
        ),
        (
            "get_guest_config_property",
            RequestBody::GetGuestConfigProperty {
                vmid: 100,
                property: b"memory\0".to_vec(),
            },
        ),
        (
            "verify_token",
            RequestBody::VerifyToken {
                token: b"root@pam!t 1234".to_vec(),
            },
        ),
        (
            "get_guest_config_properties",
            RequestBody::GetGuestConfigProperties {
                vmid: 0,
                num_props: 2,
                names: b"name\0memory\0".to_vec(),
            },
        ),
    ];
    for (name, body) in requests {
        add(
            "ipc_request",
            name.to_string(),
            Request::new(body).to_bytes(),
        );
    }
    add(
        "ipc_response",
        "ok".into(),
        Response::ok(1, b"{\n}\n".to_vec()).to_bytes(),
    );
    add(
        "ipc_response",
        "error".into(),
        Response::error(6, 2).to_bytes(),
    );

    for ((target, name), bytes) in &seeds {
        let dir: &Path = &out.join(target);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    println!("{} seeds written to {}", seeds.len(), out.display());
}
