//! RRD samples sent with SET_STATUS end up in the RRD files PVE's graphs
//! read (spec §3.8): through a real rrdcached when it runs, directly with
//! librrd when it does not. Each test runs in its own namespaces.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::qb::QbClient;
use common::Daemon;
use pmxcfs_wire::ipc::{name_field, Request, RequestBody, Response};

fn set_status(c: &QbClient, key: &str, value: &str) -> i32 {
    let request = Request::new(RequestBody::SetStatus {
        name: name_field(key.as_bytes()),
        value: [value.as_bytes(), b"\0"].concat(),
    });
    Response::decode(&c.call(&request.to_bytes()).unwrap())
        .unwrap()
        .header
        .error
}

fn connect() -> QbClient {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(c) = QbClient::connect("pve2") {
            return c;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rrdtool(args: &[&str]) -> String {
    let out = Command::new("rrdtool").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "rrdtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Rrdcached(Child);

impl Drop for Rrdcached {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_sample(ts: u64) -> String {
    format!("3617:0:{ts}:0.11:2:0.0131:0.0004:8253411328:2148532224:1073737728:0:101203873792:5402251264:123456790:98765433")
}

#[test]
fn samples_reach_rrdcached() {
    if !common::in_namespace("samples_reach_rrdcached") {
        return;
    }
    let dir = common::scratch_dir("rrdcached");
    let rrd = dir.join("rrd");
    std::fs::create_dir_all(&rrd).unwrap();
    let sock = dir.join("rrdcached.sock");
    let _cached = Rrdcached(
        Command::new("rrdcached")
            .arg("-g")
            .arg("-l")
            .arg(format!("unix:{}", sock.display()))
            .arg("-b")
            .arg(&rrd)
            .arg("-B")
            .arg("-p")
            .arg(dir.join("rrdcached.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rrdcached"),
    );
    wait_for(&sock);
    let mut d = Daemon::start(&dir);
    let c = connect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        set_status(&c, "rrd/pve2-node/refnode1", &node_sample(now)),
        0
    );
    assert_eq!(
        set_status(&c, "rrd/pve2.3-vm/100", &format!("86400:vm100:running:0:{now}:2:0.0123:2147483648:1073741824:34359738368:0:1000:2000:3000:4000")),
        0
    );
    assert_eq!(
        set_status(
            &c,
            "rrd/pve2-storage/refnode1/local",
            &format!("{now}:100861726720:5402251265")
        ),
        0
    );

    let daemon_arg = format!("unix:{}", sock.display());
    let node = rrd.join("pve-node-9.0/refnode1");
    wait_for(&node);
    let info = rrdtool(&["info", "--daemon", &daemon_arg, node.to_str().unwrap()]);
    assert!(info.contains("step = 60"), "{info}");
    assert!(info.contains("ds[netin].type = \"DERIVE\""));
    assert!(info.contains("ds[pressurememoryfull].type = \"GAUGE\""));
    assert!(info.contains("rra[7].pdp_per_row = 10080"));
    let last = rrdtool(&[
        "lastupdate",
        "--daemon",
        &daemon_arg,
        node.to_str().unwrap(),
    ]);
    assert!(last.contains(&format!("{now}: 0.11 2 0.0131")), "{last}");
    assert!(last.trim_end().ends_with("U U U U U U U"), "{last}");

    let vm = rrd.join("pve-vm-9.0/100");
    wait_for(&vm);
    let last = rrdtool(&["lastupdate", "--daemon", &daemon_arg, vm.to_str().unwrap()]);
    assert!(
        last.contains(&format!("{now}: 2 0.0123 2147483648")),
        "{last}"
    );
    let storage = rrd.join("pve-storage-9.0/refnode1/local");
    wait_for(&storage);
    let last = rrdtool(&[
        "lastupdate",
        "--daemon",
        &daemon_arg,
        storage.to_str().unwrap(),
    ]);
    assert!(
        last.contains(&format!("{now}: 100861726720 5402251265")),
        "{last}"
    );
    // The retired key format is refused (but kept in the dump, as in C).
    assert_eq!(set_status(&c, "rrd/pve2-vm/101", &node_sample(now)), 0);
    assert!(!rrd.join("pve-vm-9.0/101").exists());
    drop(c);
    d.stop_cleanly();
}

#[test]
fn samples_are_written_directly_without_rrdcached() {
    if !common::in_namespace("samples_are_written_directly_without_rrdcached") {
        return;
    }
    let dir = common::scratch_dir("rrd-direct");
    let mut d = Daemon::start(&dir);
    let c = connect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        set_status(&c, "rrd/pve2-node/refnode1", &node_sample(now)),
        0
    );
    let node = dir.join("rrd/pve-node-9.0/refnode1");
    wait_for(&node);
    let last = rrdtool(&["lastupdate", node.to_str().unwrap()]);
    assert!(last.contains(&format!("{now}: 0.11 2")), "{last}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(dir.join("rrd/pve-node-9.0"))
            .unwrap()
            .mode()
            & 0o7777,
        0o750
    );
    drop(c);
    d.stop_cleanly();
}
