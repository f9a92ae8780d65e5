//! pmxcfs-replay: check recorded pmxcfs traffic against this codebase.
//! Each subcommand's help (`pmxcfs-replay help SUBCOMMAND`) says what it
//! does; the command lines of `wire` and `shadow` are a contract (scripts
//! and the runbook call them).

use std::io::{self, BufWriter, Write};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pmxcfs_compat::decode::{decode_file, Format, Totals};
use serde_json::json;

/// Prints a line; a closed pipe (`| head`) is not an error worth a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stdout().lock(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "pmxcfs-replay",
    version,
    about = "Check recorded pmxcfs traffic (CPG recordings, packet captures) against this codebase",
    after_help = "Exit status: 0 when everything matched, 1 when something did not, 2 for a usage error or an input that cannot be read."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print and re-encode every event of CPG recordings
    ///
    /// Prints every event of the recordings with its decoded dfsm/dcdb/kvstore
    /// content, one line per event, re-encodes every message and compares it
    /// with the recorded bytes. Ends with
    /// `events: N, messages: M, byte-exact: K, undecodable: U` and exits 1
    /// unless K == M and U == 0. With --json every event is a JSON object on
    /// its own line, the totals are a final JSON object, and the totals line
    /// goes to standard error.
    Decode {
        /// One JSON object per event, then the totals
        #[arg(long)]
        json: bool,
        /// CPG event recordings (nodeN.pcap)
        #[arg(required = true, value_name = "FILE.pcap")]
        files: Vec<PathBuf>,
    },
    /// Replay recorded scenarios through our node core
    ///
    /// Each scenario directory holds one recording per node (nodeN.pcap) and
    /// the database each node started on. Every message a node sent must be
    /// the one our core decides, and its final state must be our core's.
    /// Prints a line per node and the totals; exits 0 only when every node
    /// of every scenario matched.
    Check {
        /// Every problem, not the first three per node
        #[arg(short, long)]
        verbose: bool,
        /// One JSON object: scenarios, nodes, problems, totals
        #[arg(long)]
        json: bool,
        /// Scenario directories
        #[arg(required = true, value_name = "SCENARIO_DIR")]
        dirs: Vec<PathBuf>,
    },
    /// Decode a packet capture of corosync/knet traffic into what each node's CPG clients were handed
    ///
    /// Reads the capture (pcap or pcapng) as a stream, with a progress line
    /// on standard error, and prints the rings, gaps and undeliverable
    /// messages it found. --out writes one nodeN.pcap per node (DELIVER and
    /// CONFCHG records); --expect compares every node's streams, per CPG
    /// group, with DIR/nodeN.pcap and ends with
    /// `nodes: N, delivers matched: K/M, confchgs matched: C/D`, exiting 0
    /// only when everything matched. --decrypted-out writes the capture's
    /// knet packets decrypted, defragmented and decompressed (one totem
    /// message per UDP payload, original addresses and times) for Wireshark
    /// with wireshark/pmxcfs.lua. This command line is a contract.
    Wire(WireArgs),
    /// Copy a CPG event recording for Wireshark
    ///
    /// Wireshark refuses a file with a record over 256 KiB (a large UPDATE or
    /// STATE): such records are cut to 256 KiB with their original length
    /// kept (Wireshark shows them as cut; wireshark/pmxcfs.lua decodes what
    /// is left). Prints `records: N, cut: C`.
    ForWireshark {
        #[arg(value_name = "IN.pcap")]
        input: PathBuf,
        #[arg(value_name = "OUT.pcap")]
        output: PathBuf,
    },
    /// Run a node's part of a packet capture through our node core
    ///
    /// Runs node N's part of a packet capture through our node core, from the
    /// start of N's pmxcfs process, booted on the config.db it started with
    /// (--fresh: a new database): every message N sent must be the one our
    /// core decides, every STATE and VERIFY of the cluster must be our
    /// database's. Prints a summary with the first divergence and the events
    /// before it; the last line is
    /// `shadow: node N, messages matched K/M, states matched S/T, ...: MATCH`
    /// (or `DIVERGED`), and the exit status is 0 only for MATCH (1 for a
    /// divergence or a capture that cannot prove it, 2 for a usage error).
    /// --json prints one JSON object instead. Progress goes to standard error
    /// every few seconds (not with --quiet). This command line is a contract.
    Shadow(ShadowArgs),
}

/// What `wire` is given.
#[derive(Args)]
struct WireArgs {
    #[command(flatten)]
    keys: Keys,
    /// Write nodeN.pcap per node into DIR
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Compare every node's streams with DIR/nodeN.pcap
    #[arg(long, value_name = "DIR")]
    expect: Option<PathBuf>,
    /// Write the knet packets decrypted for Wireshark
    #[arg(long, value_name = "OUT.pcapng")]
    decrypted_out: Option<PathBuf>,
    /// One JSON object instead of the text report
    #[arg(long)]
    json: bool,
    /// No progress lines
    #[arg(short, long)]
    quiet: bool,
    /// The packet capture
    capture: PathBuf,
}

/// What `shadow` is given.
#[derive(Args)]
struct ShadowArgs {
    #[command(flatten)]
    keys: Keys,
    /// The node's config.db, copied while its pmxcfs was stopped
    #[arg(
        long,
        value_name = "CONFIG.DB",
        required_unless_present = "fresh",
        conflicts_with = "fresh"
    )]
    db: Option<PathBuf>,
    /// The node started without a database
    #[arg(long)]
    fresh: bool,
    /// The nodeid of the node to be replaced
    #[arg(long, value_name = "N")]
    node: u32,
    /// The cluster's corosync.conf (for the quorum rule)
    #[arg(long, value_name = "FILE")]
    corosync_conf: Option<PathBuf>,
    /// The node's address, when the capture does not tell it
    #[arg(long, value_name = "ADDR")]
    node_ip: Option<String>,
    /// One JSON object instead of the text summary
    #[arg(long)]
    json: bool,
    /// No progress lines
    #[arg(short, long)]
    quiet: bool,
    /// The packet capture
    capture: PathBuf,
}

/// The cluster's keys and ports, for the subcommands that read knet.
#[derive(Args)]
struct Keys {
    /// The cluster's /etc/corosync/authkey (again for a second key, e.g.
    /// across a key change)
    #[arg(short = 'k', long = "authkey", value_name = "FILE", required = true)]
    authkeys: Vec<PathBuf>,
    /// The knet ports (link L uses 5405 + L)
    #[arg(long, value_name = "LO-HI", value_parser = parse_ports, default_value = "5405-5412")]
    ports: RangeInclusive<u16>,
}

impl Keys {
    /// corosync reads at most 4096 bytes of a key file.
    fn read(&self) -> Result<Vec<Vec<u8>>, String> {
        self.authkeys
            .iter()
            .map(|p| {
                std::fs::read(p)
                    .map(|mut k| {
                        k.truncate(4096);
                        k
                    })
                    .map_err(|e| format!("{}: {e}", p.display()))
            })
            .collect()
    }
}

fn parse_ports(v: &str) -> Result<RangeInclusive<u16>, String> {
    let (lo, hi) = v.split_once('-').unwrap_or((v, v));
    match (lo.parse::<u16>(), hi.parse::<u16>()) {
        (Ok(lo), Ok(hi)) if lo <= hi => Ok(lo..=hi),
        _ => Err(format!("expected LO-HI, got {v}")),
    }
}

/// A usage error found after parsing (an input that is not there): said
/// with the subcommand's name, exit 2.
fn usage_error(sub: &str, what: String) -> ExitCode {
    eprintln!("pmxcfs-replay {sub}: {what}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Decode { json, files } => decode(json, &files),
        Cmd::Check {
            verbose,
            json,
            dirs,
        } => check(verbose, json, &dirs),
        Cmd::Wire(args) => wire(args),
        Cmd::ForWireshark { input, output } => for_wireshark(&input, &output),
        Cmd::Shadow(args) => shadow(args),
    }
}

fn decode(json_out: bool, files: &[PathBuf]) -> ExitCode {
    let format = if json_out { Format::Json } else { Format::Text };
    for f in files {
        if !f.is_file() {
            return usage_error("decode", format!("{}: no such file", f.display()));
        }
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut totals = Totals::default();
    let mut unreadable = false;
    for f in files {
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

fn check(verbose: bool, json_out: bool, dirs: &[PathBuf]) -> ExitCode {
    for d in dirs {
        if !d.is_dir() {
            return usage_error(
                "check",
                format!("{}: not a scenario directory", d.display()),
            );
        }
    }
    let (mut scenarios, mut nodes, mut matched, mut total, mut final_ok) = (0, 0, 0, 0, 0);
    let mut all_ok = true;
    let mut json_scenarios = Vec::new();
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match pmxcfs_compat::check::check_scenario(dir) {
            Ok(reports) => {
                scenarios += 1;
                let mut json_nodes = Vec::new();
                for r in reports {
                    nodes += 1;
                    matched += r.sends_matched;
                    total += r.sends_total;
                    final_ok += usize::from(r.final_state_matched);
                    all_ok &= r.ok();
                    if json_out {
                        json_nodes.push(json!({
                            "node": r.node, "sends_matched": r.sends_matched,
                            "sends_total": r.sends_total,
                            "final_state_matched": r.final_state_matched,
                            "problems": r.problems, "notes": r.notes, "ok": r.ok(),
                        }));
                        continue;
                    }
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
                json_scenarios.push(json!({"scenario": name, "nodes": json_nodes}));
            }
            Err(e) => {
                eprintln!("pmxcfs-replay: {e}");
                json_scenarios.push(json!({"scenario": name, "error": e.to_string()}));
                all_ok = false;
            }
        }
    }
    let ok = all_ok && scenarios == dirs.len();
    if json_out {
        outln!(
            "{}",
            json!({"scenarios": json_scenarios, "totals": {"scenarios": scenarios, "nodes": nodes,
                   "sends_matched": matched, "sends_total": total, "final_states_matched": final_ok},
                   "ok": ok})
        );
    } else {
        println!("scenarios: {scenarios}, nodes: {nodes}, sends matched: {matched}/{total}, final state matched: {final_ok}/{nodes}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn for_wireshark(input: &std::path::Path, output: &std::path::Path) -> ExitCode {
    if !input.is_file() {
        return usage_error(
            "for-wireshark",
            format!("{}: no such file", input.display()),
        );
    }
    match pmxcfs_compat::capture::copy_for_wireshark(input, output) {
        Ok((records, cut)) => {
            println!("records: {records}, cut: {cut}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pmxcfs-replay for-wireshark: {}: {e}", input.display());
            ExitCode::from(1)
        }
    }
}

fn shadow(args: ShadowArgs) -> ExitCode {
    let ShadowArgs {
        keys,
        db,
        fresh,
        node,
        corosync_conf: conf,
        node_ip,
        json: json_out,
        quiet,
        capture,
    } = args;
    use pmxcfs_compat::shadow::{self, Options, StartDb};
    let usage = |e: String| usage_error("shadow", e);
    let ports = keys.ports.clone();
    let keys = match keys.read() {
        Ok(k) => k,
        Err(e) => return usage(e),
    };
    let start_db = match db {
        _ if fresh => StartDb::Fresh,
        None => return usage("--db or --fresh is required".into()),
        Some(path) => match pmxcfs::database::Database::read(&path) {
            Ok(Some(rows)) => StartDb::Snapshot(rows),
            Ok(None) if !path.exists() => {
                return usage(format!("{}: no such file", path.display()))
            }
            Ok(None) => {
                return usage(format!(
                    "{}: an empty database (if the node started without one, give --fresh)",
                    path.display()
                ))
            }
            Err(e) => return usage(e.to_string()),
        },
    };
    let corosync_conf = match conf {
        Some(p) => match std::fs::read(&p) {
            Ok(c) => Some(c),
            Err(e) => return usage(format!("{}: {e}", p.display())),
        },
        None => None,
    };
    let file = match std::fs::File::open(&capture) {
        Ok(f) => f,
        Err(e) => return usage(format!("{}: {e}", capture.display())),
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

fn wire(args: WireArgs) -> ExitCode {
    let WireArgs {
        keys,
        out: out_dir,
        expect,
        decrypted_out,
        json: json_out,
        quiet,
        capture,
    } = args;
    let ports = keys.ports.clone();
    let keys = match keys.read() {
        Ok(k) => k,
        Err(e) => return usage_error("wire", e),
    };
    let open = || {
        std::fs::File::open(&capture)
            .map(|f| io::BufReader::with_capacity(1 << 20, f))
            .map_err(|e| format!("{}: {e}", capture.display()))
    };
    let size = std::fs::metadata(&capture).map(|m| m.len()).unwrap_or(0);
    if let Err(e) = open() {
        return usage_error("wire", e);
    }
    if let Some(path) = &decrypted_out {
        let written = std::fs::File::create(path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                let mut out = BufWriter::new(f);
                let stats = pmxcfs_compat::knet::decrypted::write_decrypted(
                    &mut open()?,
                    keys.clone(),
                    ports.clone(),
                    &mut out,
                )
                .map_err(|e| e.to_string())?;
                out.flush().map_err(|e| e.to_string())?;
                Ok(stats)
            });
        match written {
            // With --json, standard output holds the one JSON object.
            Ok(stats) if json_out => eprintln!("{} to {}", stats.line(), path.display()),
            Ok(stats) => outln!("{} to {}", stats.line(), path.display()),
            Err(e) => {
                eprintln!("pmxcfs-replay wire: {}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
    }
    let mut progress = |bytes: u64| {
        if !quiet {
            let pct = if size > 0 {
                bytes as f64 * 100.0 / size as f64
            } else {
                0.0
            };
            eprintln!(
                "wire: {pct:.1}% of the capture read ({} MB)",
                bytes / 1_000_000
            );
        }
    };
    let decoded = match open()
        .map_err(pmxcfs_compat::knet::WireError::Write)
        .and_then(|mut r| pmxcfs_compat::knet::decode_reader(&mut r, keys, ports, &mut progress))
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("pmxcfs-replay wire: {}: {e}", capture.display());
            return ExitCode::from(1);
        }
    };
    if !json_out {
        outln!("{}", pmxcfs_compat::wire_check::report(&decoded).trim_end());
    }
    if let Some(dir) = &out_dir {
        match pmxcfs_compat::wire_check::write_views(&decoded, dir) {
            Ok(files) if !json_out => outln!("wrote {} in {}", files.join(", "), dir.display()),
            Ok(_) => {}
            Err(e) => return usage_error("wire", format!("{}: {e}", dir.display())),
        }
    }
    let comparisons = match &expect {
        None => None,
        Some(dir) => match pmxcfs_compat::wire_check::compare(&decoded, dir) {
            Ok(c) => Some(c),
            Err(e) => return usage_error("wire", e),
        },
    };
    if json_out {
        outln!(
            "{}",
            pmxcfs_compat::wire_check::json(&decoded, comparisons.as_deref())
        );
        let ok = comparisons.is_none_or(|cs| cs.iter().all(|c| c.ok()));
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    let Some(comparisons) = comparisons else {
        return ExitCode::SUCCESS;
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
