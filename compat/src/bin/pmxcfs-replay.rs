//! pmxcfs-replay: check recorded pmxcfs CPG traffic against this codebase.
//!
//! decode [--json] FILE.pcap...
//!     Print every event of the captures with its decoded dfsm/dcdb/kvstore
//!     content, one line per event, re-encode every message and compare it
//!     with the recorded bytes. Ends with
//!     `events: N, messages: M, byte-exact: K, undecodable: U`
//!     and exits 1 unless K == M and U == 0. With --json every event is a
//!     JSON object on its own line, the totals are a final JSON object, and
//!     the totals line goes to standard error.
//!
//! wire --authkey FILE [--authkey FILE2] [--ports LO-HI] [--out DIR] [--expect DIR]
//!      [--decrypted-out OUT.pcapng] CAPTURE
//!     Decode a packet capture of corosync/knet traffic (pcap or pcapng)
//!     into what each node's CPG clients were handed. Prints the rings,
//!     gaps and undeliverable messages it found; --out writes one
//!     nodeN.pcap per node (DELIVER and CONFCHG records); --expect compares
//!     every node's streams, per CPG group, with DIR/nodeN.pcap and ends with
//!     `nodes: N, delivers matched: K/M, confchgs matched: C/D`, exiting 0
//!     only when everything matched. --decrypted-out writes the capture's
//!     knet packets decrypted, defragmented and decompressed (one totem
//!     message per UDP payload, original addresses and times) for
//!     Wireshark with wireshark/pmxcfs.lua. This command line is a
//!     contract.
//!
//! for-wireshark IN.pcap OUT.pcap
//!     Copy a CPG event recording for Wireshark, which refuses a file with
//!     a record over 256 KiB (a large UPDATE or STATE): such records are
//!     cut to 256 KiB with their original length kept (Wireshark shows
//!     them as cut; wireshark/pmxcfs.lua decodes what is left). Prints
//!     `records: N, cut: C`.
//!
//! shadow --authkey FILE (--db CONFIG.DB | --fresh) --node N
//!        [--corosync-conf FILE] [--node-ip ADDR] [--ports LO-HI] [--json]
//!        [--quiet] CAPTURE
//!     Run node N's part of a packet capture through our node core, from the
//!     start of N's pmxcfs process, booted on the config.db it started with
//!     (--fresh: a new database): every message N sent must be the one our
//!     core decides, every STATE and VERIFY of the cluster must be our
//!     database's. Prints a summary with the first divergence and the events
//!     before it; the last line is
//!     `shadow: node N, messages matched K/M, states matched S/T, ...: MATCH`
//!     (or `DIVERGED`), and the exit status is 0 only for MATCH (1 for a
//!     divergence or a capture that cannot prove it, 2 for a usage error).
//!     --json prints one JSON object instead. Progress goes to standard
//!     error every few seconds (not with --quiet). This command line is a
//!     contract.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use pmxcfs_compat::decode::{decode_file, Format, Totals};
use serde_json::json;

const USAGE: &str = "usage: pmxcfs-replay decode [--json] FILE.pcap...\n       pmxcfs-replay check [-v] SCENARIO_DIR...\n       pmxcfs-replay wire --authkey FILE [--ports LO-HI] [--out DIR] [--expect DIR] [--decrypted-out OUT.pcapng] CAPTURE\n       pmxcfs-replay for-wireshark IN.pcap OUT.pcap\n       pmxcfs-replay shadow --authkey FILE (--db CONFIG.DB | --fresh) --node N [--corosync-conf FILE] [--node-ip ADDR] [--ports LO-HI] [--json] [--quiet] CAPTURE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("decode") => decode(&args[1..]),
        Some("check") => check(&args[1..]),
        Some("wire") => wire(&args[1..]),
        Some("shadow") => shadow(&args[1..]),
        Some("for-wireshark") => for_wireshark(&args[1..]),
        Some("-h") | Some("--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn decode(args: &[String]) -> ExitCode {
    let mut format = Format::Text;
    let mut files = Vec::new();
    for a in args {
        match a.as_str() {
            "--json" => format = Format::Json,
            s if s.starts_with('-') => {
                eprintln!("pmxcfs-replay decode: unknown option {s}\n{USAGE}");
                return ExitCode::from(2);
            }
            s => files.push(PathBuf::from(s)),
        }
    }
    if files.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut totals = Totals::default();
    let mut unreadable = false;
    for f in &files {
        match decode_file(f, format, &mut out, &mut totals) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = out.flush();
                eprintln!("pmxcfs-replay: {}: {e}", f.display());
                unreadable = true;
            }
            Err(e) => {
                eprintln!("pmxcfs-replay: write failed: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let line = totals.line();
    let written = match format {
        Format::Text => writeln!(out, "{line}"),
        Format::Json => writeln!(
            out,
            "{}",
            json!({"events": totals.events, "messages": totals.messages,
                   "byte_exact": totals.byte_exact, "undecodable": totals.undecodable})
        ),
    };
    let _ = written.and_then(|_| out.flush());
    if format == Format::Json {
        eprintln!("{line}");
    }
    if totals.all_exact() && !unreadable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn check(args: &[String]) -> ExitCode {
    let verbose = args.iter().any(|a| a == "-v" || a == "--verbose");
    let dirs: Vec<PathBuf> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .collect();
    let dirs: Vec<PathBuf> = dirs.into_iter().filter(|d| d.is_dir()).collect();
    if dirs.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let (mut scenarios, mut nodes, mut matched, mut total, mut final_ok) = (0, 0, 0, 0, 0);
    let mut all_ok = true;
    for dir in &dirs {
        match pmxcfs_compat::check::check_scenario(dir) {
            Ok(reports) => {
                scenarios += 1;
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                for r in reports {
                    nodes += 1;
                    matched += r.sends_matched;
                    total += r.sends_total;
                    final_ok += usize::from(r.final_state_matched);
                    all_ok &= r.ok();
                    println!(
                        "{name}/{}: sends matched {}/{}, final state {}{}",
                        r.node,
                        r.sends_matched,
                        r.sends_total,
                        if r.final_state_matched {
                            "matched"
                        } else {
                            "DIFFERS"
                        },
                        if r.problems.is_empty() {
                            String::new()
                        } else {
                            format!(", {} problem(s)", r.problems.len())
                        }
                    );
                    for n in &r.notes {
                        println!("    note: {n}");
                    }
                    let shown = if verbose { r.problems.len() } else { 3 };
                    for p in r.problems.iter().take(shown) {
                        println!("    {p}");
                    }
                }
            }
            Err(e) => {
                eprintln!("pmxcfs-replay: {e}");
                all_ok = false;
            }
        }
    }
    println!("scenarios: {scenarios}, nodes: {nodes}, sends matched: {matched}/{total}, final state matched: {final_ok}/{nodes}");
    if all_ok && scenarios == dirs.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints a line; a closed pipe (`| head`) is not an error worth a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stdout().lock(), $($arg)*);
    }};
}

/// `--authkey` files: corosync reads at most 4096 bytes of one.
fn read_key(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path)
        .map(|mut k| {
            k.truncate(4096);
            k
        })
        .map_err(|e| format!("{path}: {e}"))
}

fn parse_ports(v: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let (lo, hi) = v.split_once('-').unwrap_or((v, v));
    match (lo.parse::<u16>(), hi.parse::<u16>()) {
        (Ok(lo), Ok(hi)) if lo <= hi => Ok(lo..=hi),
        _ => Err(format!("--ports: expected LO-HI, got {v}")),
    }
}

fn for_wireshark(args: &[String]) -> ExitCode {
    let [input, output] = args else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match pmxcfs_compat::capture::copy_for_wireshark(input.as_ref(), output.as_ref()) {
        Ok((records, cut)) => {
            println!("records: {records}, cut: {cut}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pmxcfs-replay for-wireshark: {input}: {e}");
            ExitCode::from(1)
        }
    }
}

fn shadow(args: &[String]) -> ExitCode {
    use pmxcfs_compat::shadow::{self, Options, StartDb};
    let mut keys = Vec::new();
    let mut db: Option<PathBuf> = None;
    let mut fresh = false;
    let mut node: Option<u32> = None;
    let mut conf: Option<PathBuf> = None;
    let mut node_ip = None;
    let mut ports = pmxcfs_compat::knet::DEFAULT_PORTS;
    let mut json_out = false;
    let mut quiet = false;
    let mut capture = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| match it.next() {
            Some(v) => Ok(v.clone()),
            None => Err(format!("{name} needs a value")),
        };
        let r = match a.as_str() {
            "--authkey" | "-k" => value(a).and_then(|p| read_key(&p).map(|k| keys.push(k))),
            "--db" => value(a).map(|v| db = Some(PathBuf::from(v))),
            "--fresh" => {
                fresh = true;
                Ok(())
            }
            "--node" => value(a).and_then(|v| {
                v.parse()
                    .map(|n| node = Some(n))
                    .map_err(|_| format!("--node: expected a nodeid, got {v}"))
            }),
            "--corosync-conf" => value(a).map(|v| conf = Some(PathBuf::from(v))),
            "--node-ip" => value(a).map(|v| node_ip = Some(v)),
            "--ports" => value(a).and_then(|v| parse_ports(&v).map(|p| ports = p)),
            "--json" => {
                json_out = true;
                Ok(())
            }
            "--quiet" | "-q" => {
                quiet = true;
                Ok(())
            }
            s if s.starts_with('-') => Err(format!("unknown option {s}")),
            s if capture.is_none() => {
                capture = Some(PathBuf::from(s));
                Ok(())
            }
            s => Err(format!("unexpected argument {s}")),
        };
        if let Err(e) = r {
            eprintln!("pmxcfs-replay shadow: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let usage = |e: &str| {
        eprintln!("pmxcfs-replay shadow: {e}\n{USAGE}");
        ExitCode::from(2)
    };
    let Some(capture) = capture else {
        return usage("a capture file is required");
    };
    let Some(node) = node else {
        return usage("--node is required (the nodeid of the node to be replaced)");
    };
    if keys.is_empty() {
        return usage("--authkey is required (the cluster's /etc/corosync/authkey)");
    }
    let start_db = match (db, fresh) {
        (Some(_), true) => return usage("--db and --fresh exclude each other"),
        (None, false) => {
            return usage("--db is required (the node's config.db, copied while its pmxcfs was stopped), or --fresh if it started without one")
        }
        (None, true) => StartDb::Fresh,
        (Some(path), false) => match pmxcfs::database::Database::read(&path) {
            Ok(Some(rows)) => StartDb::Snapshot(rows),
            Ok(None) if !path.exists() => {
                eprintln!("pmxcfs-replay shadow: {}: no such file", path.display());
                return ExitCode::from(2);
            }
            Ok(None) => {
                eprintln!(
                    "pmxcfs-replay shadow: {}: an empty database (if the node started without one, give --fresh)",
                    path.display()
                );
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("pmxcfs-replay shadow: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let corosync_conf = match conf {
        Some(p) => match std::fs::read(&p) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("pmxcfs-replay shadow: {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let file = match std::fs::File::open(&capture) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("pmxcfs-replay shadow: {}: {e}", capture.display());
            return ExitCode::from(2);
        }
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let opts = Options {
        node,
        start_db,
        corosync_conf,
        node_ip,
    };
    let mut progress = |p: &shadow::Progress| {
        if quiet {
            return;
        }
        let pct = if size > 0 {
            p.bytes_read as f64 * 100.0 / size as f64
        } else {
            0.0
        };
        eprintln!(
            "shadow: {:.1}% of the capture read ({} MB), at {}, {} messages checked, {} divergences",
            pct,
            p.bytes_read / 1_000_000,
            shadow::utc(p.capture_time),
            p.messages_checked,
            p.divergences
        );
    };
    let report = match shadow::run(&mut reader, keys, ports, opts, &mut progress) {
        Ok(r) => r,
        Err(e) => {
            // A wrong key, a file that is no capture, no knet traffic: the
            // capture proves nothing.
            eprintln!("pmxcfs-replay shadow: {}: {e}", capture.display());
            outln!("shadow: node {node}, messages matched 0/0, states matched 0/0, divergences 0, capture problems 1, period 0 s: DIVERGED");
            return ExitCode::from(1);
        }
    };
    if json_out {
        outln!("{}", report.json());
    } else {
        outln!("{}", report.text().trim_end());
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn wire(args: &[String]) -> ExitCode {
    let mut keys = Vec::new();
    let mut out_dir = None;
    let mut expect = None;
    let mut decrypted_out: Option<PathBuf> = None;
    let mut capture = None;
    let mut ports = pmxcfs_compat::knet::DEFAULT_PORTS;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| match it.next() {
            Some(v) => Ok(v.clone()),
            None => Err(format!("{name} needs a value")),
        };
        let r = match a.as_str() {
            "--authkey" | "-k" => value(a).and_then(|p| read_key(&p).map(|k| keys.push(k))),
            "--out" => value(a).map(|v| out_dir = Some(PathBuf::from(v))),
            "--expect" => value(a).map(|v| expect = Some(PathBuf::from(v))),
            "--decrypted-out" => value(a).map(|v| decrypted_out = Some(PathBuf::from(v))),
            "--ports" => value(a).and_then(|v| parse_ports(&v).map(|p| ports = p)),
            s if s.starts_with('-') => Err(format!("unknown option {s}")),
            s if capture.is_none() => {
                capture = Some(PathBuf::from(s));
                Ok(())
            }
            s => Err(format!("unexpected argument {s}")),
        };
        if let Err(e) = r {
            eprintln!("pmxcfs-replay wire: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let Some(capture) = capture else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if keys.is_empty() {
        eprintln!(
            "pmxcfs-replay wire: --authkey is required (the cluster's /etc/corosync/authkey)"
        );
        return ExitCode::from(2);
    }
    let bytes = match std::fs::read(&capture) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("pmxcfs-replay wire: {}: {e}", capture.display());
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &decrypted_out {
        let written = std::fs::File::create(path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                let mut out = BufWriter::new(f);
                let stats = pmxcfs_compat::knet::decrypted::write_decrypted(
                    &mut &bytes[..],
                    keys.clone(),
                    ports.clone(),
                    &mut out,
                )
                .map_err(|e| e.to_string())?;
                out.flush().map_err(|e| e.to_string())?;
                Ok(stats)
            });
        match written {
            Ok(stats) => outln!("{} to {}", stats.line(), path.display()),
            Err(e) => {
                eprintln!("pmxcfs-replay wire: {}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
    }
    let decoded = match pmxcfs_compat::knet::decode(&bytes, keys, ports) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("pmxcfs-replay wire: {}: {e}", capture.display());
            return ExitCode::from(1);
        }
    };
    outln!("{}", pmxcfs_compat::wire_check::report(&decoded).trim_end());
    if let Some(dir) = &out_dir {
        match pmxcfs_compat::wire_check::write_views(&decoded, dir) {
            Ok(files) => outln!("wrote {} in {}", files.join(", "), dir.display()),
            Err(e) => {
                eprintln!("pmxcfs-replay wire: {}: {e}", dir.display());
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = expect else {
        return ExitCode::SUCCESS;
    };
    let comparisons = match pmxcfs_compat::wire_check::compare(&decoded, &dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pmxcfs-replay wire: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut dm, mut de, mut cm, mut ce) = (0, 0, 0, 0);
    let mut all_ok = true;
    for c in &comparisons {
        outln!(
            "node{}: delivers {}/{}, confchgs {}/{}{}",
            c.node,
            c.delivers_matched,
            c.delivers_expected,
            c.confchgs_matched,
            c.confchgs_expected,
            if c.ok() { "" } else { " MISMATCH" }
        );
        for l in &c.own_leaves {
            outln!("    own final leave (not dispatched to the leaving daemon): {l}");
        }
        for d in c.differences.iter().take(20) {
            outln!("    {d}");
        }
        if c.differences.len() > 20 {
            outln!("    ... {} more differences", c.differences.len() - 20);
        }
        dm += c.delivers_matched;
        de += c.delivers_expected;
        cm += c.confchgs_matched;
        ce += c.confchgs_expected;
        all_ok &= c.ok();
    }
    outln!(
        "nodes: {}, delivers matched: {dm}/{de}, confchgs matched: {cm}/{ce}",
        comparisons.len()
    );
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
