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

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use pmxcfs_compat::decode::{decode_file, Format, Totals};
use serde_json::json;

const USAGE: &str = "usage: pmxcfs-replay decode [--json] FILE.pcap...\n       pmxcfs-replay check [-v] SCENARIO_DIR...";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("decode") => decode(&args[1..]),
        Some("check") => check(&args[1..]),
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
