//! The `pve2` IPC service through the stock libqb client, as PVE::IPCC
//! calls it (observed-behaviour §5): every opcode, C's errno, the access
//! matrix (root, www-data, anyone else), malformed requests, and a daemon
//! restart under a connected client. Each test runs the real daemon in its
//! own namespaces (see `common`).

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::qb::QbClient;
use common::{Daemon, HOSTNAME};
use pmxcfs_wire::ipc::{name_field, Request, RequestBody, Response};

fn req(body: RequestBody) -> Vec<u8> {
    Request::new(body).to_bytes()
}

/// A raw request: header (zero padding) and payload.
fn raw(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&((16 + payload.len()) as i32).to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(payload);
    v
}

/// (error, payload) of a call.
fn call(c: &QbClient, request: &[u8]) -> (i32, Vec<u8>) {
    let bytes = c.call(request).expect("transport");
    let r = Response::decode(&bytes).expect("a well-formed response");
    let id = i32::from_le_bytes(request[..4].try_into().unwrap());
    assert_eq!(r.header.id, id, "the opcode is echoed");
    if r.header.error != 0 {
        assert!(r.payload.is_empty(), "no payload with an error");
    }
    (r.header.error, r.payload)
}

/// Connect to pve2, retrying while the daemon starts its IPC server (it
/// does after the mount, which is what `Daemon::start` waits for).
fn connect() -> QbClient {
    connect_with(common::qb::MAX_MSG)
}

fn connect_with(max_msg: usize) -> QbClient {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(c) = QbClient::connect_with("pve2", max_msg) {
            return c;
        }
        assert!(Instant::now() < deadline, "cannot connect to pve2");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn set_status(name: &str, value: &[u8]) -> Vec<u8> {
    req(RequestBody::SetStatus {
        name: name_field(name.as_bytes()),
        value: value.to_vec(),
    })
}

fn get_status(name: &str, node: &str) -> Vec<u8> {
    req(RequestBody::GetStatus {
        name: name_field(name.as_bytes()),
        nodename: name_field(node.as_bytes()),
        trailing: vec![],
    })
}

fn log_msg(priority: u8, ident: &str, tag: &str, msg: &str) -> Vec<u8> {
    let z = |s: &str| [s.as_bytes(), b"\0"].concat();
    req(RequestBody::LogClusterMsg {
        priority,
        ident: z(ident),
        tag: z(tag),
        msg: z(msg),
    })
}

fn cluster_log(max: u32, user: &str) -> Vec<u8> {
    req(RequestBody::GetClusterLog {
        max_entries: max,
        reserved: [0; 3],
        user: [user.as_bytes(), b"\0"].concat(),
    })
}

fn write(d: &Daemon, path: &str, data: &[u8]) {
    if let Some(parent) = d.path(path).parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(d.path(path), data).unwrap();
}

#[test]
fn every_opcode_as_root() {
    if !common::in_namespace("every_opcode_as_root") {
        return;
    }
    let dir = common::scratch_dir("ipc-root");
    let mut d = Daemon::start(&dir);
    let c = connect();
    let ok = |r: (i32, Vec<u8>)| {
        assert_eq!(r.0, 0, "{:?}", String::from_utf8_lossy(&r.1));
        r.1
    };
    let e = |r: (i32, Vec<u8>)| r.0;

    // 1-3: the special files' content.
    assert_eq!(
        ok(call(&c, &req(RequestBody::GetFsVersion))),
        fs::read(d.path(".version")).unwrap()
    );
    assert_eq!(
        ok(call(&c, &req(RequestBody::GetClusterInfo))),
        format!("{{\n\"nodename\": \"{HOSTNAME}\",\n\"version\": 0\n}}\n").into_bytes()
    );
    assert_eq!(
        ok(call(&c, &req(RequestBody::GetGuestList))),
        b"{\n\"version\": 0\n\n}\n"
    );
    assert_eq!(e(call(&c, &raw(1, b"x"))), -libc::EINVAL, "a stray payload");

    // 4-5: status store.
    assert_eq!(
        ok(call(&c, &set_status("tasklist", b"{\"a\":1}\0"))),
        b"",
        "empty, not padded"
    );
    assert_eq!(ok(call(&c, &get_status("tasklist", ""))), b"{\"a\":1}\0");
    assert_eq!(
        ok(call(&c, &get_status("tasklist", HOSTNAME))),
        b"{\"a\":1}\0"
    );
    assert_eq!(e(call(&c, &get_status("missing", ""))), -libc::ENOENT);
    assert_eq!(
        e(call(&c, &get_status("tasklist", "othernode"))),
        -libc::ENOENT
    );
    assert!(String::from_utf8(fs::read(d.path(".version")).unwrap())
        .unwrap()
        .contains("\"tasklist\": 0"));
    ok(call(&c, &set_status("tasklist", b"{\"a\":2}\0")));
    assert!(String::from_utf8(fs::read(d.path(".version")).unwrap())
        .unwrap()
        .contains("\"tasklist\": 1"));
    ok(call(&c, &set_status("tasklist", b"")));
    assert_eq!(
        e(call(&c, &get_status("tasklist", ""))),
        -libc::ENOENT,
        "a name alone deletes"
    );
    assert_eq!(
        e(call(&c, &set_status("big", &vec![b'x'; 32769]))),
        -libc::EFBIG
    );
    assert_eq!(e(call(&c, &raw(4, &[0; 100]))), -libc::EINVAL);
    // rrd and nodeip go elsewhere.
    ok(call(
        &c,
        &set_status("rrd/pve2-node/refnode1", b"1795234500:1:2\0"),
    ));
    ok(call(&c, &set_status("nodeip", b"192.0.2.11\0")));
    assert_eq!(e(call(&c, &get_status("nodeip", ""))), -libc::ENOENT);
    assert_eq!(e(call(&c, &set_status("rrd/x", b"no-nul"))), -libc::ENOMEM);

    // 10: rrd dump (with its NUL; then from the 2 s cache without it).
    let dump = ok(call(&c, &req(RequestBody::GetRrdDump)));
    assert_eq!(dump, b"pve2-node/refnode1:1795234500:1:2\n\0");
    let cached = ok(call(&c, &req(RequestBody::GetRrdDump)));
    assert_eq!(cached, b"pve2-node/refnode1:1795234500:1:2\n");
    assert_eq!(
        fs::read(d.path(".rrd")).unwrap(),
        b"pve2-node/refnode1:1795234500:1:2\n"
    );

    // 6: GET_CONFIG.
    write(&d, "storage.cfg", b"dir: local\n\tpath /var/lib/vz\n");
    write(&d, "priv/secret", b"s3cret\n");
    write(&d, "empty.cfg", b"");
    assert_eq!(
        ok(call(&c, &raw(6, b"storage.cfg\0"))),
        b"dir: local\n\tpath /var/lib/vz\n"
    );
    assert_eq!(
        ok(call(&c, &raw(6, b"/storage.cfg\0"))),
        b"dir: local\n\tpath /var/lib/vz\n"
    );
    assert_eq!(ok(call(&c, &raw(6, b"priv/secret\0"))), b"s3cret\n");
    assert_eq!(ok(call(&c, &raw(6, b"empty.cfg\0"))), b"");
    assert_eq!(e(call(&c, &raw(6, b"missing\0"))), -libc::ENOENT);
    assert_eq!(
        e(call(&c, &raw(6, b"priv\0"))),
        -libc::ENOENT,
        "a directory"
    );
    assert_eq!(e(call(&c, &raw(6, b""))), -libc::EINVAL);

    // 7-8: the cluster log.
    assert_eq!(
        ok(call(
            &c,
            &log_msg(6, "root@pam", "refprobe", "hello from ipc_probe")
        )),
        b""
    );
    ok(call(
        &c,
        &log_msg(9, "root@pam", "x", "priority 9 is dropped"),
    ));
    let all = String::from_utf8(ok(call(&c, &cluster_log(0, "")))).unwrap();
    let pid = std::process::id();
    assert!(
        all.contains(&format!("\"uid\": 2, \"time\": ")) && all.contains(&format!(
            "\"pri\": 6, \"tag\": \"refprobe\", \"pid\": {pid}, \"node\": \"{HOSTNAME}\", \"user\": \"root@pam\", \"msg\": \"hello from ipc_probe\"}}"
        )),
        "{all}"
    );
    assert!(
        all.find("refprobe").unwrap() < all.find("starting cluster log").unwrap(),
        "newest first"
    );
    assert!(!all.contains("dropped"));
    let pam = String::from_utf8(ok(call(&c, &cluster_log(0, "root@pam")))).unwrap();
    assert!(!pam.contains("starting cluster log"));
    assert_eq!(
        ok(call(&c, &cluster_log(0, "nobody"))),
        b"{\n\"data\": [\n]\n}\n"
    );
    let one = String::from_utf8(ok(call(&c, &cluster_log(1, "")))).unwrap();
    assert_eq!(one.matches("\"uid\"").count(), 1);
    assert_eq!(
        e(call(&c, &raw(8, &[0; 16]))),
        -libc::EINVAL,
        "no user string at all"
    );
    assert_eq!(
        fs::read(d.path(".clusterlog")).unwrap(),
        ok(call(&c, &cluster_log(50, "")))
    );

    // 11, 13: guest config properties.
    write(
        &d,
        "nodes/refnode1/qemu-server/100.conf",
        b"name: test100\nmemory: 512\ncores: 1\n",
    );
    write(&d, "nodes/refnode1/lxc/101.conf", b"hostname: ct101\n");
    write(
        &d,
        "nodes/othernode/qemu-server/102.conf",
        b"name: test100\nmemory: 512\n[snap]\nmemory: 9\n",
    );
    let prop = |vmid: u32, p: &str| {
        req(RequestBody::GetGuestConfigProperty {
            vmid,
            property: [p.as_bytes(), b"\0"].concat(),
        })
    };
    assert_eq!(
        ok(call(&c, &prop(0, "name"))),
        b"{\n\"100\":{\"name\": \"test100\"},\n\"102\":{\"name\": \"test100\"}\n}\n"
    );
    assert_eq!(
        ok(call(&c, &prop(100, "memory"))),
        b"{\n\"100\":{\"memory\": \"512\"}\n}\n"
    );
    assert_eq!(e(call(&c, &prop(999, "name"))), -libc::ENOENT);
    assert_eq!(e(call(&c, &prop(5, "name"))), -libc::EINVAL);
    let props = |vmid: u32, names: &[&str], n: u8| {
        req(RequestBody::GetGuestConfigProperties {
            vmid,
            num_props: n,
            names: names
                .iter()
                .flat_map(|s| [s.as_bytes(), b"\0"].concat())
                .collect(),
        })
    };
    assert_eq!(
        ok(call(&c, &props(0, &["name", "memory", "hostname"], 3))),
        b"{\n\"100\":{\"name\": \"test100\",\"memory\": \"512\"},\n\"101\":{\"hostname\": \"ct101\"},\n\"102\":{\"name\": \"test100\",\"memory\": \"512\"}\n}\n"
    );
    assert_eq!(e(call(&c, &props(0, &["Name"], 1))), -libc::EINVAL);
    assert_eq!(e(call(&c, &props(0, &["name"], 2))), -libc::EINVAL);
    // Seen with C (observed-behaviour §7): a last line without newline
    // counts, a value of only blanks is one blank, an empty value is
    // skipped, and an empty config asked for by vmid is EIO.
    write(&d, "nodes/refnode1/qemu-server/104.conf", b"name: nonl");
    write(
        &d,
        "nodes/refnode1/qemu-server/105.conf",
        b"name:   \nmemory:\n",
    );
    write(&d, "nodes/refnode1/qemu-server/106.conf", b"");
    assert_eq!(
        ok(call(&c, &prop(104, "name"))),
        b"{\n\"104\":{\"name\": \"nonl\"}\n}\n"
    );
    assert_eq!(
        ok(call(&c, &props(105, &["name", "memory"], 2))),
        b"{\n\"105\":{\"name\": \" \"}\n}\n"
    );
    assert_eq!(e(call(&c, &prop(106, "name"))), -libc::EIO);
    assert_eq!(
        ok(call(&c, &prop(0, "name"))),
        b"{\n\"100\":{\"name\": \"test100\"},\n\"102\":{\"name\": \"test100\"},\n\"104\":{\"name\": \"nonl\"},\n\"105\":{\"name\": \" \"}\n}\n",
        "the empty config is skipped in a scan of all guests"
    );

    // 12: VERIFY_TOKEN.
    let token = |t: &str| raw(12, &[t.as_bytes(), b"\0"].concat());
    assert_eq!(
        e(call(&c, &token("root@pam!t 1234"))),
        -libc::ENOENT,
        "no token.cfg"
    );
    write(&d, "priv/token.cfg", b"root@pam!t 1234\nroot@pam!u 99");
    assert_eq!(ok(call(&c, &token("root@pam!t 1234"))), b"");
    assert_eq!(ok(call(&c, &token("root@pam!u 99"))), b"");
    assert_eq!(e(call(&c, &token("root@pam!t 123"))), -libc::ENOENT);
    assert_eq!(e(call(&c, &raw(12, b"a\nb\0"))), -libc::EINVAL);

    // Unknown opcodes.
    assert_eq!(e(call(&c, &raw(99, b""))), -libc::ECHRNG);
    assert_eq!(e(call(&c, &raw(9, b""))), -libc::ECHRNG);
    drop(c);
    d.stop_cleanly();
}

/// Run `call` in a child process with other credentials; the child prints
/// the response as hex.
fn call_as(uid: u32, gid: u32, request: &[u8]) -> Result<(i32, Vec<u8>), String> {
    let hex: String = request.iter().map(|b| format!("{b:02x}")).collect();
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ipc_client_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PMXCFS_IPC_REQUEST", hex)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints the test's name on the same line, before our output.
    let line = stdout
        .lines()
        .find_map(|l| l.split("RESPONSE ").nth(1))
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .ok_or_else(|| stdout.to_string())?;
    if let Some(err) = line.strip_prefix("connect-failed") {
        return Err(format!("connect failed{err}"));
    }
    let bytes: Vec<u8> = (0..line.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
        .collect();
    let r = Response::decode(&bytes).unwrap();
    Ok((r.header.error, r.payload))
}

/// The client side of `call_as` (runs only with PMXCFS_IPC_REQUEST set).
/// Without it, it checks that connecting to a service nobody offers fails.
#[test]
fn ipc_client_process() {
    let Ok(hex) = std::env::var("PMXCFS_IPC_REQUEST") else {
        assert!(QbClient::connect("pmxcfs-test-no-such-service").is_none());
        return;
    };
    let request: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    match QbClient::connect("pve2") {
        None => println!(
            "RESPONSE connect-failed:{}",
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        ),
        Some(c) => {
            let bytes = c.call(&request).unwrap();
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            println!("RESPONSE {hex}");
        }
    }
}

#[test]
fn access_matrix() {
    if !common::in_namespace("access_matrix") {
        return;
    }
    let dir = common::scratch_dir("ipc-access");
    let mut d = Daemon::start(&dir);
    write(&d, "storage.cfg", b"dir: local\n");
    write(&d, "priv/secret", b"s3cret\n");
    let www = {
        let name = std::ffi::CString::new("www-data").unwrap();
        unsafe { (*libc::getgrnam(name.as_ptr())).gr_gid }
    };
    // www-data: read-only.
    let r = call_as(33, www, &req(RequestBody::GetFsVersion)).unwrap();
    assert_eq!(r.0, 0);
    assert_eq!(
        call_as(33, www, &raw(6, b"storage.cfg\0")).unwrap(),
        (0, b"dir: local\n".to_vec())
    );
    assert_eq!(
        call_as(33, www, &raw(6, b"priv/secret\0")).unwrap().0,
        -libc::EPERM
    );
    // No spelling of a private path returns it to www-data (C 9.1.6 does
    // for the double slashes).
    write(&d, "nodes/n1/priv/key", b"private\n");
    for spelling in [
        "nodes/n1/priv/key",
        "nodes//n1/priv/key",
        "nodes/n1//priv/key",
        "nodes///n1/priv/key",
        "/nodes/n1/priv/key",
        "//priv/secret",
        "priv//secret",
        "./priv/secret",
        "nodes/n1/./priv/key",
        "nodes/n1/../n1/priv/key",
    ] {
        let path = format!("{spelling}\0");
        let (status, data) = call_as(33, www, &raw(6, path.as_bytes())).unwrap();
        assert!(status < 0, "www-data read {spelling}: {data:?}");
        assert_ne!(data, b"private\n");
    }
    assert_eq!(
        call_as(0, 0, &raw(6, b"nodes//n1/priv/key\0")).unwrap(),
        (0, b"private\n".to_vec()),
        "root reads it however spelled"
    );
    assert_eq!(
        call_as(33, www, &set_status("k", b"v\0")).unwrap().0,
        -libc::EPERM
    );
    assert_eq!(
        call_as(33, www, &log_msg(6, "a", "b", "c")).unwrap().0,
        -libc::EPERM
    );
    // EPERM before the size check, as in C.
    assert_eq!(call_as(33, www, &raw(4, b"")).unwrap().0, -libc::EPERM);
    // root with gid www-data is read-only too; root:root is not.
    assert_eq!(
        call_as(0, www, &set_status("k", b"v\0")).unwrap().0,
        -libc::EPERM
    );
    assert_eq!(call_as(0, 0, &set_status("k", b"v\0")).unwrap().0, 0);
    // Anyone else is refused at connection time, before any request is
    // read: as with C, the stock client's connect fails with errno -1
    // (what PVE::IPCC leaves in `$!`), whatever the request.
    for (uid, gid) in [(65534, 65534), (0, 1000), (1000, 0), (1000, 1000)] {
        for request in [
            req(RequestBody::GetFsVersion),
            raw(6, b"storage.cfg\0"),
            set_status("k", b"refused\0"),
        ] {
            assert_eq!(
                call_as(uid, gid, &request),
                Err("connect failed:-1".to_string()),
                "uid {uid} gid {gid}"
            );
        }
    }
    // Nothing a refused client sent reached the store.
    assert_eq!(
        call_as(0, 0, &get_status("k", "")).unwrap(),
        (0, b"v\0".to_vec())
    );
    d.stop_cleanly();
}

/// The daemon's peak resident memory (VmHWM), in KiB.
fn peak_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn an_oversized_request_is_refused_without_copying_it() {
    if !common::in_namespace("an_oversized_request_is_refused_without_copying_it") {
        return;
    }
    let dir = common::scratch_dir("ipc-oversized");
    let mut d = Daemon::start(&dir);
    // A client may ask for any buffer size; PVE::IPCC's is 1 MiB.
    const HUGE: usize = 48 << 20;
    let c = connect_with(HUGE + (1 << 20));
    let before = peak_kib(d.pid());
    let mut request = raw(6, b"storage.cfg\0");
    request.resize(HUGE, b'x');
    request[8..12].copy_from_slice(&(HUGE as i32).to_le_bytes());
    let (error, _) = call(&c, &request);
    assert_eq!(error, -libc::EFBIG);
    let grown = peak_kib(d.pid()).saturating_sub(before);
    assert!(
        grown < (HUGE as u64 / 1024) / 4,
        "the daemon's peak memory grew by {grown} KiB for a refused request of {} KiB",
        HUGE / 1024
    );
    // The largest valid request still works on the same connection.
    let value = vec![b'v'; 32768 - 1];
    let mut value0 = value.clone();
    value0.push(0);
    assert_eq!(call(&c, &set_status("big", &value0)).0, 0);
    d.stop_cleanly();
}

#[test]
fn malformed_requests_never_break_the_service() {
    if !common::in_namespace("malformed_requests_never_break_the_service") {
        return;
    }
    let dir = common::scratch_dir("ipc-malformed");
    let mut d = Daemon::start(&dir);
    let c = connect();
    let mut seed = 0x1234_5678u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let id = (next() % 16) as i32;
        let len = (next() % 600) as usize;
        let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let (err, _) = call(&c, &raw(id, &payload));
        assert!(err <= 0);
    }
    // Oversized and huge-looking values.
    let (err, _) = call(&c, &raw(4, &vec![b'x'; 300_000]));
    assert_eq!(err, -libc::EFBIG);
    // Still answering, and a second client is served as well.
    let c2 = connect();
    assert_eq!(call(&c2, &req(RequestBody::GetGuestList)).0, 0);
    assert_eq!(call(&c, &req(RequestBody::GetGuestList)).0, 0);
    drop(c);
    drop(c2);
    d.stop_cleanly();
}

#[test]
fn restart_under_a_connected_client() {
    if !common::in_namespace("restart_under_a_connected_client") {
        return;
    }
    let dir = common::scratch_dir("ipc-restart");
    let mut d = Daemon::start(&dir);
    let c = connect();
    assert_eq!(call(&c, &req(RequestBody::GetGuestList)).0, 0);
    let flag = d.rundir.join("cfs-restart-flag");
    assert!(!flag.exists());
    d.stop_cleanly();
    assert!(flag.exists(), "clients retry while the flag exists");
    // The old connection is gone; a new daemon serves a new one.
    assert!(c.call(&req(RequestBody::GetGuestList)).is_err());
    drop(c);
    let mut d = Daemon::start(&dir);
    // The new daemon removes the flag once its IPC server is up (C: about
    // a second after start), within the clients' 10 s retry window.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while flag.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the restart flag stays after the restart"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let c = connect();
    assert_eq!(call(&c, &req(RequestBody::GetGuestList)).0, 0);
    drop(c);
    d.stop_cleanly();
}
