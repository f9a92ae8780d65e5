//! The database tools an administrator runs by hand, with the daemon
//! stopped or beside it: `--check-db` (what is wrong), `--repair-db` (a
//! repaired copy), `--export-db` (the tree as plain files). They read the
//! database without writing to it; the rules are the core's (`dbcheck`,
//! `dbrepair`), this edge reads and writes the files and says what it did.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use pmxcfs_wire::dcdb::DT_DIR;

use crate::core::dbcheck;
use crate::core::dbexport::{self, Placed};
use crate::core::dbrepair;
use crate::database::{with_suffix, Database};

/// `pmxcfs --check-db`: open a config.db read-only and say, in plain
/// words, everything the daemon would refuse or repair; 0 when it would
/// start on it.
pub fn check_db(path: &Path) -> i32 {
    println!("database: {}", path.display());
    if !path.exists() {
        println!("result: there is no database here; the daemon would create a new one");
        return 0;
    }
    let rows = match Database::read(path) {
        Ok(Some(rows)) => rows,
        Ok(None) => {
            println!("result: the database is empty; the daemon would start on a new one");
            return 0;
        }
        Err(e) => {
            println!("refused: {e}");
            println!("result: the daemon would NOT start on this database");
            return 1;
        }
    };
    let report = dbcheck::check(&rows);
    println!(
        "content: {} directories, {} files, version {}",
        report.directories, report.files, report.version
    );
    for r in &report.refusals {
        println!("refused: {r}");
    }
    for r in &report.repairs {
        println!("repaired at start: {r}");
    }
    if report.starts() {
        println!("result: the daemon would start on this database");
        0
    } else {
        println!(
            "result: the daemon would NOT start on this database ({} problem(s))",
            report.refusals.len()
        );
        1
    }
}

/// Where the entries taken out of a repaired database are written: beside
/// it, `OUT.set-aside/`.
pub fn set_aside_dir(output: &Path) -> PathBuf {
    with_suffix(output, ".set-aside")
}

/// `pmxcfs --repair-db IN OUT`: write a repaired copy of IN to OUT (a new
/// file; IN is only read), every change said; entries that cannot stay
/// are written below `OUT.set-aside/`. 0 only when OUT passes
/// `--check-db` with nothing left to repair at start.
pub fn repair_db(input: &Path, output: &Path) -> i32 {
    let fail = |what: String| {
        eprintln!("pmxcfs: {what}");
        1
    };
    if output.exists() {
        return fail(format!(
            "{}: already exists; the repaired copy goes to a new file",
            output.display()
        ));
    }
    let aside_dir = set_aside_dir(output);
    if aside_dir.exists() {
        return fail(format!("{}: already exists", aside_dir.display()));
    }
    let rows = match Database::read_any(input) {
        Ok(rows) if rows.is_empty() => {
            return fail(format!(
                "{}: holds no entries; there is nothing to repair (the daemon starts on a new database)",
                input.display()
            ))
        }
        Ok(rows) => rows,
        Err(e) => return fail(format!("cannot repair {e}")),
    };
    println!("reading: {} ({} rows)", input.display(), rows.len());
    let repair = dbrepair::repair(&rows);
    if repair.changes.is_empty() {
        println!("no change was needed: the copy holds the same rows");
    }
    for c in &repair.changes {
        println!("change: {c}");
    }
    if let Err(e) = Database::create_with(output, repair.rows.clone()) {
        let _ = fs::remove_file(output);
        return fail(format!("cannot write the repaired copy: {e}"));
    }
    println!("written: {} ({} rows)", output.display(), repair.rows.len());
    if !repair.set_aside.is_empty() {
        match write_placed(&aside_dir, &dbexport::place_set_aside(&repair.set_aside)) {
            Ok(written) => {
                for (inode, file) in &written {
                    println!("set aside: inode {inode} written to {}", file.display());
                }
                println!(
                    "set aside: {} entries written below {} (plain files at the paths they had; not in the repaired database)",
                    written.len(),
                    aside_dir.display()
                )
            }
            Err(e) => {
                return fail(format!(
                    "{}: writing the entries set aside failed: {e}; the repaired copy {} is complete without them",
                    aside_dir.display(),
                    output.display()
                ))
            }
        }
    }
    // The copy is judged as the daemon would judge it, from the file.
    let written = match Database::read(output) {
        Ok(Some(rows)) => rows,
        Ok(None) => return fail(format!("{}: reads back empty", output.display())),
        Err(e) => return fail(format!("the repaired copy does not read back: {e}")),
    };
    let check = dbcheck::check(&written);
    if check.starts() && check.repairs.is_empty() {
        println!(
            "result: {} passes --check-db ({} directories, {} files, version {}); to use it, stop pmxcfs, keep the old config.db and move this one in its place",
            output.display(),
            check.directories,
            check.files,
            check.version
        );
        0
    } else {
        for r in check.refusals.iter().chain(&check.repairs) {
            println!("still wrong: {r}");
        }
        println!("result: the repaired copy does NOT pass --check-db");
        1
    }
}

fn write_file(path: &Path, data: &[u8], mtime: u32) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime.into()))
}

fn new_private_dir(path: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)
}

/// Write placed entries below `dir`: directories (their times set after
/// their contents), files with their data and times. Returns where each
/// went.
fn write_placed(dir: &Path, placed: &[Placed]) -> std::io::Result<Vec<(u64, PathBuf)>> {
    new_private_dir(dir)?;
    let mut written = Vec::new();
    let mut dir_times: BTreeMap<PathBuf, u32> = BTreeMap::new();
    for p in placed {
        let path = dir.join(OsStr::from_bytes(&p.path));
        if let Some(parent) = path.parent() {
            new_private_dir(parent)?;
        }
        if p.row.entry_type == DT_DIR {
            new_private_dir(&path)?;
            dir_times.insert(path.clone(), p.row.mtime);
        } else {
            write_file(
                &path,
                p.row.data.as_deref().unwrap_or_default(),
                p.row.mtime,
            )?;
        }
        written.push((p.row.inode, path));
    }
    // Deepest first, so a parent's time is set after its children's.
    for (path, mtime) in dir_times.iter().rev() {
        if let Ok(d) = File::open(path) {
            let _ = d.set_modified(UNIX_EPOCH + Duration::from_secs((*mtime).into()));
        }
    }
    Ok(written)
}

/// `pmxcfs --export-db DB DIR`: the tree of DB as plain files below DIR
/// (created, or empty), readable and diffable; private to root (0700 and
/// 0600: the tree holds private keys). Entries that do not resolve to a
/// path are named and left out; a second entry of the same name is
/// written beside the first as `NAME.inode-N`.
pub fn export_db(database: &Path, dir: &Path) -> i32 {
    let fail = |what: String| {
        eprintln!("pmxcfs: {what}");
        1
    };
    if dir.exists() {
        match fs::read_dir(dir).map(|mut d| d.next().is_none()) {
            Ok(true) => {}
            Ok(false) => {
                return fail(format!(
                    "{}: not empty; export into a new or empty directory",
                    dir.display()
                ))
            }
            Err(e) => return fail(format!("{}: {e}", dir.display())),
        }
    }
    let rows = match Database::read_any(database) {
        Ok(rows) => rows,
        Err(e) => return fail(format!("cannot export {e}")),
    };
    let plan = dbexport::plan(&rows, &dir.display().to_string());
    if let Err(e) = write_placed(dir, &plan.placed) {
        return fail(format!("{}: {e}", dir.display()));
    }
    for n in &plan.notes {
        println!("note: {n}");
    }
    for p in &plan.problems {
        println!("problem: {p}");
    }
    let files = plan.placed.iter().filter(|p| p.row.entry_type != DT_DIR);
    println!(
        "exported: {} directories, {} files, {} bytes of {} (version {}) to {}",
        plan.placed.len() - files.clone().count(),
        files.clone().count(),
        files
            .map(|p| p.row.data.as_ref().map_or(0, Vec::len) as u64)
            .sum::<u64>(),
        database.display(),
        rows.iter().find(|r| r.inode == 0).map_or(0, |r| r.version),
        dir.display()
    );
    if plan.problems.is_empty() {
        0
    } else {
        println!("result: the tree is broken (see the problems above); `pmxcfs --check-db` says what the daemon refuses, `pmxcfs --repair-db` mends it");
        1
    }
}
