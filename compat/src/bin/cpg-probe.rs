//! cpg-probe: a small CPG client that records what corosync hands it, in
//! the capture format (`nodeN.pcap`), so a packet capture of the same run
//! can be checked with `pmxcfs-replay wire --expect`.
//!
//! cpg-probe --record FILE [--group NAME] [--interval-ms N] [--send-flag PATH]
//!
//! Joins the group (the name as given plus a NUL, as pmxcfs does), and every
//! interval multicasts one message to it while PATH exists (default:
//! always): mostly small ones, every 10th 5 000 bytes (knet fragments it),
//! every 25th 100 000 bytes (totempg fragments it). Every DELIVER and CONFCHG
//! is appended to FILE at once and logged as one line on stdout. SIGTERM
//! ends it without leaving the groups, as a daemon that dies would.

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pmxcfs_wire::capture::{
    pcap_file_header, pcap_record, CpgAddress, Event, EventBody, EventKind,
};
use pmxcfs_wire::codec::Codec;
use rust_corosync::cpg;
use rust_corosync::{DispatchFlags, NodeId};

thread_local! {
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

struct Sink {
    file: std::fs::File,
    nodeid: u32,
    pid: u32,
    /// The group as joined (NUL included): rust-corosync hands callbacks
    /// the name cut at the NUL, the recording keeps corosync's bytes.
    group: String,
}

fn record(kind: EventKind, body: EventBody, line: String) {
    SINK.with(|s| {
        let mut s = s.borrow_mut();
        let s = s.as_mut().expect("sink set before dispatch");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let event = Event::new(kind, s.nodeid, s.pid, s.group.as_bytes(), body);
        // One write per record, so a killed probe leaves whole records.
        let bytes = pcap_record(now.as_secs() as u32, now.subsec_micros(), &event.to_bytes());
        s.file.write_all(&bytes).expect("record file");
        println!("{line}");
    });
}

fn on_deliver(_h: &cpg::Handle, group: String, nodeid: NodeId, pid: u32, msg: &[u8], _len: usize) {
    let nodeid = u32::from(nodeid);
    let line = format!(
        "deliver {} from {nodeid}/{pid} {} bytes",
        group.trim_end_matches('\0'),
        msg.len()
    );
    record(
        EventKind::Deliver,
        EventBody::Deliver {
            sender_nodeid: nodeid,
            sender_pid: pid,
            msg: msg.to_vec(),
        },
        line,
    );
}

fn addresses(list: &[cpg::Address]) -> Vec<CpgAddress> {
    list.iter().map(pmxcfs::corosync::address).collect()
}

fn on_confchg(
    _h: &cpg::Handle,
    group: &str,
    members: Vec<cpg::Address>,
    left: Vec<cpg::Address>,
    joined: Vec<cpg::Address>,
) {
    let text = |l: &[CpgAddress]| {
        l.iter()
            .map(|a| format!("{}/{}", a.nodeid, a.pid))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (members, left, joined) = (addresses(&members), addresses(&left), addresses(&joined));
    let nodes: Vec<String> = members.iter().map(|a| a.nodeid.to_string()).collect();
    let line = format!(
        "confchg {} nodes={} members={} left={} joined={}",
        group.trim_end_matches('\0'),
        nodes.join(","),
        text(&members),
        text(&left),
        text(&joined)
    );
    record(
        EventKind::Confchg,
        EventBody::Confchg {
            members,
            left,
            joined,
        },
        line,
    );
}

fn main() {
    let mut record_path = None;
    let mut group = "cpg_probe\0".to_string();
    let mut interval = Duration::from_millis(100);
    let mut send_flag: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| {
            eprintln!("cpg-probe: {a} needs a value");
            std::process::exit(2)
        });
        match a.as_str() {
            "--record" => record_path = Some(PathBuf::from(v)),
            "--group" => group = format!("{v}\0"),
            "--interval-ms" => {
                interval = Duration::from_millis(v.parse().expect("--interval-ms N"))
            }
            "--send-flag" => send_flag = Some(PathBuf::from(v)),
            _ => {
                eprintln!("cpg-probe: unknown option {a}");
                std::process::exit(2)
            }
        }
    }
    let Some(record_path) = record_path else {
        eprintln!(
            "usage: cpg-probe --record FILE [--group NAME] [--interval-ms N] [--send-flag PATH]"
        );
        std::process::exit(2)
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&record_path)
        .expect("record file");
    if file.metadata().unwrap().len() == 0 {
        file.write_all(&pcap_file_header()).unwrap();
    }
    let model = cpg::ModelData::ModelV1(cpg::Model1Data {
        flags: cpg::Model1Flags::None,
        deliver_fn: Some(on_deliver),
        confchg_fn: Some(on_confchg),
        totem_confchg_fn: None,
    });
    let handle = loop {
        match cpg::initialize(&model, 0) {
            Ok(h) => break h,
            Err(e) => {
                eprintln!("cpg-probe: cpg initialize: {e}; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    let nodeid = u32::from(cpg::local_get(&handle).expect("local nodeid"));
    let pid = std::process::id();
    SINK.with(|s| {
        *s.borrow_mut() = Some(Sink {
            file,
            nodeid,
            pid,
            group: group.clone(),
        })
    });
    cpg::join(&handle, &group).expect("cpg join");
    let fd = cpg::fd_get(&handle).expect("cpg fd");
    let mut next = Instant::now() + interval;
    let mut count = 0u64;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as i32) };
        if pfd.revents != 0 && cpg::dispatch(&handle, DispatchFlags::All).is_err() {
            eprintln!("cpg-probe: corosync went away");
            std::process::exit(1);
        }
        if Instant::now() >= next {
            next += interval;
            if send_flag.as_ref().is_none_or(|p| p.exists()) {
                count += 1;
                let size = if count % 25 == 0 {
                    100_000
                } else if count % 10 == 0 {
                    5_000
                } else {
                    0
                };
                let mut msg = format!("probe {nodeid}/{pid} #{count}").into_bytes();
                msg.extend((0..size).map(|i| (i as u64 * 31 + count) as u8));
                // TRY_AGAIN while corosync re-forms the ring: the message is
                // simply not sent (the recording only holds what arrived).
                let _ = cpg::mcast_joined(&handle, cpg::Guarantee::TypeAgreed, &msg);
            }
        }
    }
}
