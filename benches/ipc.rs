//! IPC round trips through the stock libqb client against the real daemon:
//! GET_FS_VERSION, GET_CONFIG of a small file, GET_GUEST_LIST on the
//! 5000-file fixture (with 500 guests added), 1000 calls each on one
//! persistent connection, as PVE::IPCC makes them. C's figure on a similar
//! machine is about 50-70 µs per call (observed-behaviour §6). Not a test.
//!
//!     cargo bench --bench ipc        (as root)

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "../tests/common/qb.rs"]
mod qb;

use std::fs;
use std::time::{Duration, Instant};

use common::{scratch_dir as scratch, Daemon, HOSTNAME};
use pmxcfs_wire::ipc::{Request, RequestBody};

/// The middle of C's range.
const C_MICROS: f64 = 60.0;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    common::enter_namespace();
    let dir = scratch("ipc");
    fs::create_dir_all(dir.join("lib")).unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/files-5000.db");
    fs::copy(fixture, dir.join("lib/config.db")).unwrap();
    let (mut d, _) = Daemon::start_waiting_for(&dir, ".version");
    fs::create_dir_all(d.mount.join(format!("nodes/{HOSTNAME}/qemu-server"))).unwrap();
    for vmid in 100..600 {
        fs::write(
            d.mount
                .join(format!("nodes/{HOSTNAME}/qemu-server/{vmid}.conf")),
            b"name: vm\nmemory: 512\n",
        )
        .unwrap();
    }
    fs::write(
        d.mount.join("storage.cfg"),
        b"dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let client = loop {
        if let Some(c) = qb::QbClient::connect("pve2") {
            break c;
        }
        assert!(Instant::now() < deadline, "no pve2 service");
        std::thread::sleep(Duration::from_millis(20));
    };
    let cases = [
        (
            "unknown opcode (the transport alone)",
            Request::with_id(99, RequestBody::Unknown { payload: vec![] }).to_bytes(),
        ),
        (
            "GET_FS_VERSION",
            Request::new(RequestBody::GetFsVersion).to_bytes(),
        ),
        (
            "GET_CONFIG storage.cfg",
            Request::new(RequestBody::GetConfig {
                path: b"storage.cfg\0".to_vec(),
            })
            .to_bytes(),
        ),
        (
            "GET_GUEST_LIST (500 guests, 5000 files)",
            Request::new(RequestBody::GetGuestList).to_bytes(),
        ),
    ];
    println!("IPC round trips, 1000 calls on one connection, median of 5 runs");
    println!("{:<44} {:>10} {:>8} {:>7}", "request", "ours", "C", "ratio");
    for (name, request) in cases {
        let mut runs = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..1000 {
                client.call(&request).expect("a reply");
            }
            runs.push(t.elapsed().as_secs_f64() * 1e6 / 1000.0);
        }
        runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let us = runs[2];
        println!(
            "{name:<44} {us:>7.1} µs {C_MICROS:>5.0} µs {:>6.2}x",
            us / C_MICROS
        );
    }
    drop(client);
    let _ = d.stop();
}
