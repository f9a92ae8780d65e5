//! `--record FILE`: what this node's CPG clients are handed and what they
//! send, written in the capture format (`captures/FORMAT.md`) as the
//! recorder of the C captures wrote it, so `pmxcfs-replay check` can judge
//! our own traffic like C's.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use pmxcfs_wire::capture::{pcap_file_header, pcap_record, Event, EventBody, EventKind};
use pmxcfs_wire::Codec;

use crate::core::dfsm::Member;
use crate::core::logline::Subsystem;
use crate::log;

pub struct Recorder {
    out: std::io::BufWriter<std::fs::File>,
    pub me: Member,
}

impl Recorder {
    /// Record into `path`; a recording that exists goes on (a restarted
    /// daemon's events follow its earlier processes', as in the C
    /// captures).
    pub fn create(path: &Path) -> std::io::Result<Recorder> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let empty = file.metadata()?.len() == 0;
        let mut out = std::io::BufWriter::new(file);
        if empty {
            out.write_all(&pcap_file_header())?;
        }
        out.flush()?;
        Ok(Recorder {
            out,
            me: Member {
                nodeid: 0,
                pid: std::process::id(),
            },
        })
    }

    /// One event, stamped `at` (the time the core was given for it, so a
    /// recording replays exactly).
    pub fn record(&mut self, at: SystemTime, group: &[u8], kind: EventKind, body: EventBody) {
        let event = Event::new(kind, self.me.nodeid, self.me.pid, group, body);
        let t = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let record = pcap_record(t.as_secs() as u32, t.subsec_micros(), &event.to_bytes());
        if self
            .out
            .write_all(&record)
            .and_then(|_| self.out.flush())
            .is_err()
        {
            log::crit(Subsystem::Main, "cannot write the CPG recording");
        }
    }
}
