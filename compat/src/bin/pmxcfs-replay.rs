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
//! wire --authkey FILE [--authkey FILE2] [--ports LO-HI] [--out DIR] [--expect DIR] CAPTURE
//!     Decode a packet capture of corosync/knet traffic (pcap or pcapng)
//!     into what each node's CPG clients were handed. Prints the rings,
//!     gaps and undeliverable messages it found; --out writes one
//!     nodeN.pcap per node (DELIVER and CONFCHG records); --expect compares
//!     every node's streams, per CPG group, with DIR/nodeN.pcap and ends with
//!     `nodes: N, delivers matched: K/M, confchgs matched: C/D`, exiting 0
//!     only when everything matched. This command line is a contract.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use pmxcfs_compat::decode::{decode_file, Format, Totals};
use serde_json::json;

const USAGE: &str = "usage: pmxcfs-replay decode [--json] FILE.pcap...\n       pmxcfs-replay check [-v] SCENARIO_DIR...\n       pmxcfs-replay wire --authkey FILE [--ports LO-HI] [--out DIR] [--expect DIR] CAPTURE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("decode") => decode(&args[1..]),
        Some("check") => check(&args[1..]),
        Some("wire") => wire(&args[1..]),
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

fn wire(args: &[String]) -> ExitCode {
    let mut keys = Vec::new();
    let mut out_dir = None;
    let mut expect = None;
    let mut capture = None;
    let mut ports = pmxcfs_compat::knet::DEFAULT_PORTS;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| match it.next() {
            Some(v) => Ok(v.clone()),
            None => Err(format!("{name} needs a value")),
        };
        let r = match a.as_str() {
            "--authkey" | "-k" => value(a).and_then(|p| {
                std::fs::read(&p)
                    .map(|mut k| {
                        // corosync reads at most 4096 bytes of the key file.
                        k.truncate(4096);
                        keys.push(k)
                    })
                    .map_err(|e| format!("{p}: {e}"))
            }),
            "--out" => value(a).map(|v| out_dir = Some(PathBuf::from(v))),
            "--expect" => value(a).map(|v| expect = Some(PathBuf::from(v))),
            "--ports" => value(a).and_then(|v| {
                let (lo, hi) = v.split_once('-').unwrap_or((&v, &v));
                match (lo.parse::<u16>(), hi.parse::<u16>()) {
                    (Ok(lo), Ok(hi)) if lo <= hi => {
                        ports = lo..=hi;
                        Ok(())
                    }
                    _ => Err(format!("--ports: expected LO-HI, got {v}")),
                }
            }),
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
