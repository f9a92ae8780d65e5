//! Decoding throughput of `pmxcfs-replay wire`: the real encrypted capture
//! w1 (7 650 knet datagrams, aes256/sha256, 3 186 knet fragments) decoded
//! end to end, from the pcapng bytes to every node's CPG view. The Python
//! prototype of the same layers did about 16 000 packets/s on a machine like
//! ours; the goal is at least ten times that. Not a test.
//!
//!     cargo bench -p pmxcfs-compat --bench knet_decode

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pmxcfs_compat::knet::{decode, order, packets, views, DEFAULT_PORTS};

const PYTHON_PACKETS_PER_SECOND: f64 = 16_000.0;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../captures/w1-encrypted-basic");
    let file = std::fs::read(dir.join("wire.pcapng")).expect("w1 capture");
    let key = std::fs::read(dir.join("authkey")).expect("w1 authkey");
    let packets = decode(&file, vec![key.clone()], DEFAULT_PORTS)
        .unwrap()
        .totem
        .stats
        .datagrams as f64;

    // Warm up, then run for at least two seconds and take the median round.
    let mut rounds = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) || rounds.len() < 10 {
        let t = Instant::now();
        let d = decode(&file, vec![key.clone()], DEFAULT_PORTS).unwrap();
        assert_eq!(d.views.per_node.len(), 3);
        rounds.push(t.elapsed().as_secs_f64());
    }
    rounds.sort_by(f64::total_cmp);
    let median = rounds[rounds.len() / 2];
    let rate = packets / median;

    // Where the time goes, one layer group at a time.
    let t = Instant::now();
    let (datagrams, _) = packets::read_datagrams(&file, DEFAULT_PORTS).unwrap();
    let read = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let totem = order::order(&datagrams, vec![key]);
    let ordered = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let _ = views::emulate(&totem);
    let emulated = t.elapsed().as_secs_f64();

    println!(
        "knet_decode: {packets} packets, median of {} rounds",
        rounds.len()
    );
    println!(
        "  end to end:           {:>10.0} packets/s ({:.1}x the Python prototype)",
        rate,
        rate / PYTHON_PACKETS_PER_SECOND
    );
    let total = read + ordered + emulated;
    println!(
        "  capture reading:      {:>5.1} % of the time",
        100.0 * read / total
    );
    println!("  crypto, knet, totem:  {:>5.1} %", 100.0 * ordered / total);
    println!(
        "  totempg, CPG views:   {:>5.1} %",
        100.0 * emulated / total
    );
}
