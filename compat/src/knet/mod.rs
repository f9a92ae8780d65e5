//! Decoding real corosync 3 / knet packet captures into the CPG event
//! streams each node's clients saw (`pmxcfs-replay wire`).
//!
//! One module per layer, each pure over bytes (knet-wire.md §1, §13):
//! packets (pcap/pcapng → UDP), crypto (knet envelope), link (knet header,
//! defragmentation, decompression), totem (totemsrp messages), order (the
//! agreed order per ring), totempg (packing, groups, service messages) and
//! views (what each node's CPG clients were handed).

pub mod crypto;
pub mod decrypted;
pub mod fields;
pub mod forge;
pub mod fuzzing;
pub mod link;
pub mod order;
pub mod packets;
pub mod totem;
pub mod totempg;
pub mod views;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub use order::Totem;
pub use views::Views;

use order::{OrderEvent, Orderer, Ring};
use packets::Datagram;
use views::{Emitted, Emulator};

/// The default knet ports: link L uses 5405 + L, eight links.
pub const DEFAULT_PORTS: std::ops::RangeInclusive<u16> = 5405..=5412;

/// Everything decoded from one capture.
pub struct Decoded {
    pub read: packets::ReadStats,
    pub totem: Totem,
    pub views: Views,
}

#[derive(Debug)]
pub enum WireError {
    File(packets::CaptureFileError),
    NoKnetTraffic,
    WrongKey {
        datagrams: u64,
    },
    /// Writing an output file failed.
    Write(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::File(e) => write!(f, "{e}"),
            WireError::NoKnetTraffic => {
                write!(f, "the capture holds no UDP traffic on the knet ports")
            }
            WireError::WrongKey { datagrams } => write!(
                f,
                "no packet authenticates with the given key ({datagrams} knet datagrams tried)"
            ),
            WireError::Write(e) => write!(f, "writing the output failed: {e}"),
        }
    }
}

/// Decodes a capture file's bytes with the given authkeys.
pub fn decode(
    file: &[u8],
    keys: Vec<Vec<u8>>,
    ports: std::ops::RangeInclusive<u16>,
) -> Result<Decoded, WireError> {
    let (mut datagrams, read) = packets::read_datagrams(file, ports).map_err(WireError::File)?;
    if datagrams.is_empty() {
        return Err(WireError::NoKnetTraffic);
    }
    // pcapng files from several interfaces need not be in time order.
    datagrams.sort_by(|a, b| a.time.total_cmp(&b.time));
    let totem = order::order(&datagrams, keys);
    if totem.stats.authenticated == 0 {
        return Err(WireError::WrongKey {
            datagrams: totem.stats.datagrams,
        });
    }
    let views = views::emulate(&totem);
    Ok(Decoded { read, totem, views })
}

/// [`decode`] over a capture file being read: the file is never held
/// whole, nor are its datagrams (tokens, retransmits, other traffic); only
/// what the cluster multicast is kept, as the rings and views are built
/// from it. Datagrams are put in time order within [`REORDER_WINDOW`], as
/// [`stream`] does. `progress` is called with the bytes read so far, every
/// few MB.
pub fn decode_reader(
    reader: &mut dyn std::io::Read,
    keys: Vec<Vec<u8>>,
    ports: std::ops::RangeInclusive<u16>,
    progress: &mut dyn FnMut(u64),
) -> Result<Decoded, WireError> {
    let mut counting = CountingReader {
        inner: reader,
        read: 0,
        reported: 0,
        progress,
    };
    let mut collector = order::TotemCollector::new(keys);
    let mut read = packets::ReadStats::default();
    read_in_time_order(&mut counting, ports, &mut read, &mut |d| {
        collector.push(&d);
        !key_is_wrong(collector.stats())
    })?;
    found_traffic(&read, collector.stats())?;
    let totem = collector.finish();
    let views = views::emulate(&totem);
    Ok(Decoded { read, totem, views })
}

/// Counts the bytes read and reports them every [`PROGRESS_BYTES`].
struct CountingReader<'a> {
    inner: &'a mut dyn std::io::Read,
    read: u64,
    reported: u64,
    progress: &'a mut dyn FnMut(u64),
}

const PROGRESS_BYTES: u64 = 64 << 20;

impl std::io::Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read - self.reported >= PROGRESS_BYTES {
            self.reported = self.read;
            (self.progress)(self.read);
        }
        Ok(n)
    }
}

/// What [`stream`] hands on, in order.
pub enum Streamed {
    /// A ring starts: its members and where they came from.
    RingStart(Ring),
    /// A ring ends (after its last mcast): its facts as they stood then.
    RingEnd(Ring),
    /// A callback of a node's CPG clients, or a message in the agreed order.
    Emitted(Emitted),
}

/// What streaming a capture found, besides what it handed on.
pub struct StreamSummary {
    pub read: packets::ReadStats,
    pub order: order::Stats,
    pub totempg_orphans: u64,
    pub totempg_unfinished: u64,
    /// The first and last datagram's time.
    pub first_time: Option<f64>,
    pub last_time: Option<f64>,
}

/// How far (capture seconds) a datagram may come before an earlier one
/// and still be put in its place: pcapng files of several interfaces
/// interleave their blocks, in time order only per interface.
pub const REORDER_WINDOW: f64 = 2.0;

/// After this many datagrams without one that authenticates, the key is
/// wrong (a cluster sends a token every few milliseconds).
const KEY_PROBE: u64 = 5000;

/// Whether no datagram authenticated in the first [`KEY_PROBE`] ones.
fn key_is_wrong(s: &order::Stats) -> bool {
    s.authenticated == 0 && s.datagrams >= KEY_PROBE
}

/// The capture held knet traffic and the key opened it.
fn found_traffic(read: &packets::ReadStats, s: &order::Stats) -> Result<(), WireError> {
    if read.udp_on_ports == 0 {
        return Err(WireError::NoKnetTraffic);
    }
    if s.authenticated == 0 {
        return Err(WireError::WrongKey {
            datagrams: s.datagrams,
        });
    }
    Ok(())
}

/// Every knet datagram of a capture being read, to `ordered` in time order
/// (put in place within [`REORDER_WINDOW`]); once `ordered` answers false
/// (a wrong key), nothing more is handed on and the reading stops.
fn read_in_time_order(
    reader: &mut dyn std::io::Read,
    ports: std::ops::RangeInclusive<u16>,
    read: &mut packets::ReadStats,
    ordered: &mut dyn FnMut(Datagram) -> bool,
) -> Result<(), WireError> {
    let mut reorder = Reorder::new();
    let going = std::cell::Cell::new(true);
    let mut hand_on = |d: Datagram| {
        if going.get() && !ordered(d) {
            going.set(false);
        }
    };
    packets::for_each_datagram(reader, ports, read, &mut |d| {
        reorder.push(d, &mut hand_on);
        going.get()
    })
    .map_err(WireError::File)?;
    reorder.finish(&mut hand_on);
    Ok(())
}

/// Datagrams in time order, released once nothing earlier can come.
struct Reorder {
    heap: BinaryHeap<Reverse<(TimeKey, u64)>>,
    held: std::collections::HashMap<u64, Datagram>,
    newest: f64,
    next: u64,
}

/// A capture time ordered by `total_cmp` (a NaN of a damaged record
/// cannot break the heap).
struct TimeKey(f64);
impl PartialEq for TimeKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for TimeKey {}
impl PartialOrd for TimeKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimeKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Reorder {
    fn new() -> Reorder {
        Reorder {
            heap: BinaryHeap::new(),
            held: std::collections::HashMap::new(),
            newest: f64::MIN,
            next: 0,
        }
    }

    fn push(&mut self, d: Datagram, out: &mut dyn FnMut(Datagram)) {
        self.newest = self.newest.max(d.time);
        self.heap.push(Reverse((TimeKey(d.time), self.next)));
        self.held.insert(self.next, d);
        self.next += 1;
        while let Some(Reverse((TimeKey(t), _))) = self.heap.peek() {
            if *t > self.newest - REORDER_WINDOW {
                break;
            }
            self.pop(out);
        }
    }

    fn pop(&mut self, out: &mut dyn FnMut(Datagram)) {
        if let Some(Reverse((_, i))) = self.heap.pop() {
            if let Some(d) = self.held.remove(&i) {
                out(d);
            }
        }
    }

    fn finish(&mut self, out: &mut dyn FnMut(Datagram)) {
        while !self.heap.is_empty() {
            self.pop(out);
        }
    }
}

/// Layers 1–7 as a stream over a capture file being read: memory stays
/// bounded by what is undecided (an open ring's unacknowledged mcasts, the
/// reorder window), whatever the capture's length. `only` limits the
/// per-node callbacks computed to those nodes.
pub fn stream(
    reader: &mut dyn std::io::Read,
    keys: Vec<Vec<u8>>,
    ports: std::ops::RangeInclusive<u16>,
    only: Option<Vec<u32>>,
    sink: &mut dyn FnMut(Streamed),
) -> Result<StreamSummary, WireError> {
    let mut orderer = Orderer::new(keys);
    let mut emulator = match only {
        Some(nodes) => Emulator::for_nodes(nodes),
        None => Emulator::default(),
    };
    let mut read = packets::ReadStats::default();
    let mut first_time: Option<f64> = None;
    let mut last_time: Option<f64> = None;
    let mut pass_on = |events: Vec<OrderEvent>, emulator: &mut Emulator| {
        for e in events {
            let end = match &e {
                OrderEvent::Start(ring) => {
                    sink(Streamed::RingStart(ring.clone()));
                    None
                }
                OrderEvent::End(ring) => Some(ring.clone()),
                OrderEvent::Mcast { .. } => None,
            };
            emulator.handle(e, &mut |x| sink(Streamed::Emitted(x)));
            if let Some(ring) = end {
                sink(Streamed::RingEnd(ring));
            }
        }
    };
    read_in_time_order(reader, ports, &mut read, &mut |d| {
        first_time.get_or_insert(d.time);
        last_time = Some(d.time);
        orderer.push(&d);
        pass_on(orderer.take_events(), &mut emulator);
        !key_is_wrong(&orderer.stats)
    })?;
    found_traffic(&read, &orderer.stats)?;
    orderer.finish();
    pass_on(orderer.take_events(), &mut emulator);
    Ok(StreamSummary {
        read,
        order: orderer.stats,
        totempg_orphans: emulator.totempg_orphans,
        totempg_unfinished: emulator.totempg_unfinished,
        first_time,
        last_time,
    })
}
