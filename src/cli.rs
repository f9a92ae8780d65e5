//! The daemon's command line: C's (`-d`, `-f`, `-l`, `--help`), the
//! database tools an administrator runs by hand (`--check-db`,
//! `--repair-db`, `--export-db`, `--version`), and options for test and lab
//! setups that `--help` does not show (pmxcfs(8) lists them).

use std::path::PathBuf;

use clap::{ArgGroup, Parser};

use crate::daemon::{Options, Paths};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Serve /etc/pve.
    Run(Options),
    /// Check a database and exit.
    CheckDb(PathBuf),
    /// Write a repaired copy of a database.
    RepairDb { input: PathBuf, output: PathBuf },
    /// Write a database's tree as plain files.
    ExportDb { database: PathBuf, dir: PathBuf },
}

#[derive(Parser, Debug)]
#[command(
    name = "pmxcfs",
    // `pmxcfs (pmxcfs-rs) 0.3.0`: which daemon, at a glance.
    version = concat!("(pmxcfs-rs) ", env!("CARGO_PKG_VERSION")),
    about = "Proxmox VE cluster configuration filesystem (pmxcfs-rs, a wire-compatible replacement of the C pmxcfs)",
    after_help = "Without a tool option the daemon serves /etc/pve; see pmxcfs(8).",
    group(ArgGroup::new("tool").args(["check_db", "repair_db", "export_db"]).multiple(false))
)]
struct Cli {
    /// Turn on debug messages
    #[arg(short = 'd', long)]
    debug: bool,
    /// Do not daemonize server
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Force local mode (ignore corosync.conf, force quorum)
    #[arg(short = 'l', long)]
    local: bool,

    /// Record this node's CPG events to FILE (the capture format of
    /// pmxcfs-replay), for a support case
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,

    /// Check a config.db (default: the one in use) without changing it;
    /// exit 0 when the daemon would start on it
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    check_db: Option<Option<PathBuf>>,
    /// Write a repaired copy of the database IN to OUT (IN is never
    /// changed), saying every change; exit 0 only when OUT passes --check-db
    #[arg(long, num_args = 2, value_names = ["IN", "OUT"])]
    repair_db: Option<Vec<PathBuf>>,
    /// Write the tree of the database DB as plain files below DIR (a new or
    /// empty directory)
    #[arg(long, num_args = 2, value_names = ["DB", "DIR"])]
    export_db: Option<Vec<PathBuf>>,

    // Test and lab setups: another instance beside the system's. Not shown
    // by --help; pmxcfs(8) lists them.
    #[arg(long, value_name = "DIR", hide = true)]
    mountpoint: Option<PathBuf>,
    #[arg(long, value_name = "DIR", hide = true)]
    statedir: Option<PathBuf>,
    #[arg(long, value_name = "DIR", hide = true)]
    rundir: Option<PathBuf>,
    #[arg(long, value_name = "FILE", hide = true)]
    pidfile: Option<PathBuf>,
    #[arg(long, value_name = "DIR", hide = true)]
    rrd_dir: Option<PathBuf>,
    #[arg(long, value_name = "PATH", hide = true)]
    rrdcached_socket: Option<PathBuf>,
    /// Locks abandoned for this many seconds expire (C: 120)
    #[arg(long, value_name = "SECONDS", hide = true)]
    test_lock_timeout: Option<u32>,
}

/// Parse the command line (with the program name first). `--help` and
/// `--version` come back as an error whose `exit` prints them and exits 0;
/// a usage error exits 1, as C's pmxcfs does on a bad option.
pub fn parse<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    let mut paths = Paths::default();
    let set = |slot: &mut PathBuf, v: Option<PathBuf>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    set(&mut paths.mountpoint, cli.mountpoint);
    set(&mut paths.statedir, cli.statedir);
    set(&mut paths.rundir, cli.rundir);
    set(&mut paths.pidfile, cli.pidfile);
    set(&mut paths.rrd_dir, cli.rrd_dir);
    set(&mut paths.rrdcached_socket, cli.rrdcached_socket);
    if let Some(path) = cli.check_db {
        return Ok(Command::CheckDb(path.unwrap_or_else(|| paths.database())));
    }
    if let Some(mut two) = cli.repair_db {
        let output = two.pop().expect("clap takes two values");
        let input = two.pop().expect("clap takes two values");
        return Ok(Command::RepairDb { input, output });
    }
    if let Some(mut two) = cli.export_db {
        let dir = two.pop().expect("clap takes two values");
        let database = two.pop().expect("clap takes two values");
        return Ok(Command::ExportDb { database, dir });
    }
    Ok(Command::Run(Options {
        debug: cli.debug,
        foreground: cli.foreground,
        local: cli.local,
        paths,
        test_lock_timeout: cli.test_lock_timeout,
        record: cli.record,
    }))
}

/// The help text, as `--help` prints it.
pub fn help() -> String {
    use clap::CommandFactory;
    Cli::command().render_help().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        match parse(std::iter::once("pmxcfs").chain(args.iter().copied())).unwrap() {
            Command::Run(o) => o,
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn c_flags_alone_and_combined() {
        let o = run(&["-fl"]);
        assert!(o.foreground && o.local && !o.debug);
        let o = run(&["--debug", "--foreground"]);
        assert!(o.debug && o.foreground && !o.local);
        assert_eq!(o.paths.mountpoint, PathBuf::from("/etc/pve"));
    }

    #[test]
    fn extra_arguments_and_unknown_options_are_errors() {
        for bad in [
            &["x"][..],
            &["--bogus"],
            &["-x"],
            &["--repair-db", "only-one"],
        ] {
            let e = parse(std::iter::once("pmxcfs").chain(bad.iter().copied())).unwrap_err();
            assert_ne!(e.exit_code(), 0, "{bad:?}");
        }
    }

    #[test]
    fn test_options_work_but_are_not_in_the_help() {
        let o = run(&[
            "--mountpoint",
            "/m",
            "--statedir",
            "/s",
            "--test-lock-timeout",
            "3",
        ]);
        assert_eq!(o.paths.mountpoint, PathBuf::from("/m"));
        assert_eq!(o.paths.database(), PathBuf::from("/s/config.db"));
        assert_eq!(o.test_lock_timeout, Some(3));
        let help = help();
        for shown in [
            "--debug",
            "--foreground",
            "--local",
            "--check-db",
            "--repair-db",
            "--export-db",
            "--version",
        ] {
            assert!(help.contains(shown), "{shown} missing from:\n{help}");
        }
        for hidden in [
            "--test-lock-timeout",
            "--mountpoint",
            "--statedir",
            "--rundir",
            "--pidfile",
        ] {
            assert!(!help.contains(hidden), "{hidden} shown in:\n{help}");
        }
    }

    #[test]
    fn the_version_names_pmxcfs_rs() {
        use clap::CommandFactory;
        let v = Cli::command().render_version();
        assert_eq!(
            v.trim(),
            format!("pmxcfs (pmxcfs-rs) {}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn database_tools() {
        let p =
            |args: &[&str]| parse(std::iter::once("pmxcfs").chain(args.iter().copied())).unwrap();
        assert!(
            matches!(p(&["--check-db"]), Command::CheckDb(d) if d == PathBuf::from("/var/lib/pve-cluster/config.db"))
        );
        assert!(
            matches!(p(&["--statedir", "/s", "--check-db"]), Command::CheckDb(d) if d == PathBuf::from("/s/config.db"))
        );
        assert!(
            matches!(p(&["--check-db", "/x.db"]), Command::CheckDb(d) if d == PathBuf::from("/x.db"))
        );
        assert!(
            matches!(p(&["--repair-db", "a", "b"]), Command::RepairDb { input, output } if input == PathBuf::from("a") && output == PathBuf::from("b"))
        );
        assert!(
            matches!(p(&["--export-db", "a", "d"]), Command::ExportDb { database, dir } if database == PathBuf::from("a") && dir == PathBuf::from("d"))
        );
        assert!(parse(["pmxcfs", "--check-db", "--export-db", "a", "b"]).is_err());
    }
}
