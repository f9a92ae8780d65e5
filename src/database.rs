//! The SQLite edge: `config.db` exactly as the C daemon keeps it (spec §4):
//! one `tree` table, WAL, synchronous=NORMAL, one transaction per change.
//!
//! A database is validated read-only before anything is written to it: a
//! file that is not ours to change (not SQLite, another schema, a tree that
//! does not load) stops the daemon with a message and is left untouched.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OpenFlags};

use crate::core::memdb::{DbChange, LoadError, Row};
use crate::core::node::PersistFailure;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS tree (  inode INTEGER PRIMARY KEY NOT NULL,  parent INTEGER NOT NULL CHECK(typeof(parent)=='integer'),  version INTEGER NOT NULL CHECK(typeof(version)=='integer'),  writer INTEGER NOT NULL CHECK(typeof(writer)=='integer'),  mtime INTEGER NOT NULL CHECK(typeof(mtime)=='integer'),  type INTEGER NOT NULL CHECK(typeof(type)=='integer'),  name TEXT NOT NULL,  data BLOB);";

/// The columns of `tree` as `PRAGMA table_info` reports them.
const COLUMNS: [(&str, &str); 8] = [
    ("inode", "INTEGER"),
    ("parent", "INTEGER"),
    ("version", "INTEGER"),
    ("writer", "INTEGER"),
    ("mtime", "INTEGER"),
    ("type", "INTEGER"),
    ("name", "TEXT"),
    ("data", "BLOB"),
];

/// How long a write waits for a reader's lock (another process reading
/// config.db, e.g. a backup).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const REPLACE: &str =
    "REPLACE INTO tree (inode, parent, version, writer, mtime, type, name, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

#[derive(Debug)]
pub enum DbError {
    /// The file exists but is not an SQLite database.
    NotSqlite { path: PathBuf, detail: String },
    /// An SQLite database without our `tree` table, or with other columns.
    WrongSchema { path: PathBuf, detail: String },
    /// The rows do not form a tree C would load.
    BadTree { path: PathBuf, error: LoadError },
    /// A value of a wrong type or range in a row.
    BadRow { path: PathBuf, detail: String },
    Sqlite {
        path: PathBuf,
        error: rusqlite::Error,
    },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::NotSqlite { path, detail } => {
                write!(f, "{}: not an SQLite database ({detail})", path.display())
            }
            DbError::WrongSchema { path, detail } => {
                write!(f, "{}: not a pmxcfs database: {detail}", path.display())
            }
            DbError::BadTree { path, error } => write!(f, "{}: {error}", path.display()),
            DbError::BadRow { path, detail } => write!(f, "{}: {detail}", path.display()),
            DbError::Sqlite { path, error } => write!(f, "{}: {error}", path.display()),
            DbError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for DbError {}

/// An open config.db.
pub struct Database {
    path: PathBuf,
    conn: Connection,
    /// Transactions committed or tried, and the pages SQLite wrote for
    /// them (for the benchmarks: `stats`).
    pub transactions: u64,
    pub pages_written: u64,
    /// How long each transaction took (commit latency).
    pub commit_seconds: crate::core::metrics::Histogram,
    /// The page size in use: what a written page costs on disk (plus the
    /// write-ahead log's 24-byte frame header).
    pub page_size: u64,
    /// What the open did about the page size (for the log, and whether a
    /// conversion is left for after the start).
    pub page_size_at_open: PageSizeAtOpen,
}

/// What opening a database did about its page size.
#[derive(Debug, PartialEq, Eq)]
pub enum PageSizeAtOpen {
    /// It had [`PAGE_SIZE`] already, or is new and got it.
    Kept,
    /// Rewritten with [`PAGE_SIZE`].
    Changed { old: i64, new: i64 },
    /// The rewrite failed (no room for the copy VACUUM makes): the file
    /// keeps its page size and works as before.
    Failed(String),
    /// Larger than [`CONVERT_AT_OPEN_LIMIT`]: served as it is, to be
    /// converted after the start ([`Database::copy_with_small_pages`],
    /// [`Database::replace_file`]).
    Later,
}

/// The page size config.db is given. SQLite writes every page a change
/// touches to the write-ahead log, a whole page each: the row of the file
/// and the `__version__` row, and the overflow pages of a larger file. For
/// the small files of /etc/pve, 1 KiB pages write about a quarter of what
/// SQLite's default of 4 KiB (C's) writes. Any page size is the same
/// schema to C, which opens the file as it is.
pub const PAGE_SIZE: u32 = 1024;

/// Pages of write-ahead log before SQLite copies them into the main file:
/// 4 MiB, as SQLite's default of 1000 pages is with 4 KiB pages (a page
/// changed many times between two checkpoints is copied once).
pub const WAL_AUTOCHECKPOINT: u32 = 4096;

/// Databases up to this size get [`PAGE_SIZE`] at open (a rewrite of a
/// few MB takes tens of ms); a larger one (a C database of a big cluster:
/// a rewrite of 51 MB took most of a start) is served as it is and
/// converted in the background once /etc/pve is up.
pub const CONVERT_AT_OPEN_LIMIT: u64 = 8 << 20;

/// `path` with `suffix` appended to its last component (`config.db-wal`,
/// `config.db.converting`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn u32_of(path: &Path, inode: i64, column: &str, v: i64) -> Result<u32, DbError> {
    u32::try_from(v).map_err(|_| DbError::BadRow {
        path: path.to_path_buf(),
        detail: format!("row inode {inode}: {column} {v} out of range"),
    })
}

impl Database {
    /// The rows of an existing database, read without writing to it; `None`
    /// when there is no database yet (a missing or empty file). A file that
    /// is not a pmxcfs database is an error and stays untouched.
    pub fn read(path: &Path) -> Result<Option<Vec<Row>>, DbError> {
        if !path.exists() {
            return Ok(None);
        }
        let rows = Self::read_rows(path)?;
        if rows.is_empty() {
            return Ok(None);
        }
        if !rows.iter().any(|r| r.inode == 0) {
            return Err(DbError::WrongSchema {
                path: path.to_path_buf(),
                detail: "the `__version__` row (inode 0) is missing".into(),
            });
        }
        Ok(Some(rows))
    }

    /// Every row of a database with C's schema, whatever the rows hold (for
    /// `--repair-db` and `--export-db`: a tree the daemon refuses still has
    /// to be read). A file of another schema is an error.
    pub fn read_any(path: &Path) -> Result<Vec<Row>, DbError> {
        if !path.exists() {
            return Err(DbError::Io {
                path: path.to_path_buf(),
                error: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        Self::read_rows(path)
    }

    /// Write `rows` into a new database at `path` with C's schema and
    /// settings, in one transaction; the file must not exist. The
    /// write-ahead log is copied into it at the end: one self-contained
    /// file, which C and this daemon open as it is.
    pub fn create_with(path: &Path, rows: Vec<Row>) -> Result<(), DbError> {
        if path.exists() {
            return Err(DbError::Io {
                path: path.to_path_buf(),
                error: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
        let mut db = Database::open(path)?;
        db.apply_all(&[DbChange {
            delete_inodes: Vec::new(),
            write_rows: rows,
        }])
        .map_err(|f| DbError::BadRow {
            path: path.to_path_buf(),
            detail: f.lines.concat().trim_end().to_string(),
        })?;
        db.checkpoint();
        Ok(())
    }

    /// Open (or create) the database for writing, with C's settings. Call
    /// it after the rows were read and found loadable.
    pub fn open(path: &Path) -> Result<Database, DbError> {
        let sqlite = |error| DbError::Sqlite {
            path: path.to_path_buf(),
            error,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .map_err(sqlite)?;
        let page_size_at_open = Self::set_page_size(&conn);
        // journal_mode answers with a row; query it rather than execute.
        let _: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(sqlite)?;
        let _: i64 = conn
            .query_row(
                &format!("PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}"),
                [],
                |r| r.get(0),
            )
            .map_err(sqlite)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(sqlite)?;
        // The pragma, not rusqlite's busy_timeout(): that one needs SQLite
        // 3.44 (sqlite3_set_clientdata), and Debian 12 ships 3.40.
        let _: i64 = conn
            .query_row(
                &format!("PRAGMA busy_timeout={}", BUSY_TIMEOUT.as_millis()),
                [],
                |r| r.get(0),
            )
            .map_err(sqlite)?;
        conn.execute_batch(CREATE_TABLE).map_err(sqlite)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |error| DbError::Io {
                path: path.to_path_buf(),
                error,
            },
        )?;
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sqlite)?;
        Ok(Database {
            path: path.to_path_buf(),
            conn,
            transactions: 0,
            pages_written: 0,
            commit_seconds: Default::default(),
            page_size: page_size.max(0) as u64,
            page_size_at_open,
        })
    }

    /// Give the database [`PAGE_SIZE`]: a new one before its first page is
    /// written; an existing one (C's default is 4 KiB) rewritten once
    /// with VACUUM, which needs the rollback journal for the time. On a
    /// failure (no room for the copy VACUUM makes) the file keeps its page
    /// size and works as before. A large one is left for later.
    fn set_page_size(conn: &Connection) -> PageSizeAtOpen {
        let size = |c: &Connection| -> i64 {
            c.query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap_or(0)
        };
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap_or(0);
        let old = size(conn);
        if old == PAGE_SIZE as i64 {
            return PageSizeAtOpen::Kept;
        }
        if pages == 0 {
            // A new file: the page size is set before anything is written.
            let _ = conn.execute_batch(&format!("PRAGMA page_size={PAGE_SIZE}"));
            return PageSizeAtOpen::Kept;
        }
        if (pages * old) as u64 > CONVERT_AT_OPEN_LIMIT {
            return PageSizeAtOpen::Later;
        }
        let converted = (|| -> rusqlite::Result<()> {
            let _: String = conn.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
            conn.execute_batch(&format!("PRAGMA page_size={PAGE_SIZE}; VACUUM"))
        })();
        match converted {
            Ok(()) => PageSizeAtOpen::Changed {
                old,
                new: size(conn),
            },
            Err(e) => PageSizeAtOpen::Failed(e.to_string()),
        }
    }

    /// The path the background conversion writes its copy to.
    pub fn conversion_path(path: &Path) -> PathBuf {
        with_suffix(path, ".converting")
    }

    /// A copy of the database at `path` with [`PAGE_SIZE`] pages, written
    /// beside it by a connection of its own (`VACUUM INTO`: a snapshot read
    /// that does not hold up the daemon's writes). Returns the copy's path
    /// and the page size it replaces.
    pub fn copy_with_small_pages(path: &Path) -> Result<(PathBuf, i64), String> {
        let copy = Self::conversion_path(path);
        let _ = std::fs::remove_file(&copy);
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| e.to_string())?;
        let old: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        conn.execute_batch(Self::READ_ONCE_CACHE)
            .map_err(|e| e.to_string())?;
        // VACUUM INTO takes the connection's page size setting.
        conn.execute_batch(&format!("PRAGMA page_size={PAGE_SIZE}"))
            .map_err(|e| e.to_string())?;
        let quoted = copy.to_string_lossy().replace('\'', "''");
        let written = conn
            .execute_batch(&format!("VACUUM INTO '{quoted}'"))
            .map_err(|e| e.to_string())
            .and_then(|_| {
                // On disk before it replaces the original.
                std::fs::File::open(&copy)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&copy);
            return Err(e);
        }
        Ok((copy, old))
    }

    /// Put the file `copy` in the place of this database and reopen it with
    /// the same settings; the counters go on. Call it with no change in
    /// between the copy's snapshot and now (the caller holds the lock under
    /// which changes are persisted). On a failure before the rename the
    /// database stays as it was.
    pub fn replace_file(&mut self, copy: &Path) -> Result<(), String> {
        // Everything into the main file, the log emptied: nothing of the old
        // file's log can be read into the copy.
        self.checkpoint();
        let placeholder = Connection::open_in_memory().map_err(|e| e.to_string())?;
        let old = std::mem::replace(&mut self.conn, placeholder);
        if let Err((conn, e)) = old.close() {
            self.conn = conn;
            return Err(e.to_string());
        }
        // SQLite removes the log and the shared-memory file when the last
        // connection closes: if they are still there, another process (an
        // administrator's sqlite3, a backup) has the database open, and its
        // log must not meet the copy. Not now, then.
        let in_use =
            with_suffix(&self.path, "-wal").exists() || with_suffix(&self.path, "-shm").exists();
        let renamed = if in_use {
            Err("another process has the database open".to_string())
        } else {
            std::fs::rename(copy, &self.path).map_err(|e| e.to_string())
        };
        if renamed.is_ok() {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
        }
        // Reopened either way: the copy in place, or the old file. If that
        // fails, the placeholder refuses every write (no table), so the node
        // takes no change it cannot keep, and `probe` opens the file again.
        self.reopen()?;
        renamed
    }

    /// Open the file again in place of the connection, with the same
    /// settings; the counters go on.
    fn reopen(&mut self) -> Result<(), String> {
        let reopened = Database::open(&self.path).map_err(|e| e.to_string())?;
        self.conn = reopened.conn;
        self.page_size = reopened.page_size;
        self.page_size_at_open = reopened.page_size_at_open;
        Ok(())
    }

    /// The page cache of a connection that reads the database once, in
    /// order (loading it, copying it): 256 KiB.
    const READ_ONCE_CACHE: &'static str = "PRAGMA cache_size=-256";

    /// Read every row through a read-only connection, after checking the
    /// schema, so that a foreign file is never written to.
    fn read_rows(path: &Path) -> Result<Vec<Row>, DbError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| DbError::NotSqlite {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let not_sqlite = |e: rusqlite::Error| DbError::NotSqlite {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        let mut stmt = conn
            .prepare("PRAGMA table_info(tree)")
            .map_err(not_sqlite)?;
        let columns: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(not_sqlite)?
            .collect::<Result<_, _>>()
            .map_err(not_sqlite)?;
        if columns.is_empty() {
            let tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(not_sqlite)?;
            if tables == 0 {
                // An empty SQLite file: a fresh database.
                return Ok(Vec::new());
            }
            return Err(DbError::WrongSchema {
                path: path.to_path_buf(),
                detail: "no table `tree`".into(),
            });
        }
        let expected: Vec<(String, String)> = COLUMNS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        if columns != expected {
            let got: Vec<String> = columns.iter().map(|(n, t)| format!("{n} {t}")).collect();
            return Err(DbError::WrongSchema {
                path: path.to_path_buf(),
                detail: format!("table `tree` has columns ({}), expected inode, parent, version, writer, mtime, type, name, data", got.join(", ")),
            });
        }
        // Read once, in order: the page cache would only hold pages no
        // one reads again (2 MB of them by default, kept by malloc after).
        conn.execute_batch(Self::READ_ONCE_CACHE)
            .map_err(not_sqlite)?;
        // As many rows as there are: no doubling of a vector of 50 000.
        let count: i64 = conn
            .query_row("SELECT count(*) FROM tree", [], |r| r.get(0))
            .map_err(not_sqlite)?;
        let mut stmt = conn
            .prepare("SELECT inode, parent, version, writer, mtime, type, name, data FROM tree")
            .map_err(not_sqlite)?;
        let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut rows = stmt.query([]).map_err(not_sqlite)?;
        while let Some(r) = rows.next().map_err(not_sqlite)? {
            let int = |i: usize| -> Result<i64, DbError> {
                r.get::<_, i64>(i).map_err(|e| DbError::BadRow {
                    path: path.to_path_buf(),
                    detail: format!("column {}: {e}", COLUMNS[i].0),
                })
            };
            let inode = int(0)?;
            let name = match r.get_ref(6).map_err(not_sqlite)? {
                ValueRef::Text(t) | ValueRef::Blob(t) => t.to_vec(),
                _ => {
                    return Err(DbError::BadRow {
                        path: path.to_path_buf(),
                        detail: format!("row inode {inode}: name is not text"),
                    })
                }
            };
            let data = match r.get_ref(7).map_err(not_sqlite)? {
                ValueRef::Null => None,
                ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
                _ => {
                    return Err(DbError::BadRow {
                        path: path.to_path_buf(),
                        detail: format!("row inode {inode}: data is not a blob"),
                    })
                }
            };
            let entry_type = int(5)?;
            out.push(Row {
                inode: u64::try_from(inode).map_err(|_| DbError::BadRow {
                    path: path.to_path_buf(),
                    detail: format!("row inode {inode}: negative inode"),
                })?,
                parent: int(1)? as u64,
                version: int(2)? as u64,
                writer: u32_of(path, inode, "writer", int(3)?)?,
                mtime: u32_of(path, inode, "mtime", int(4)?)?,
                entry_type: u8::try_from(entry_type).unwrap_or(0),
                name,
                data,
            });
        }
        Ok(out)
    }

    /// Persist changes, one transaction each, in order (C
    /// `bdb_backend_write`, `bdb_backend_commit_update`). On a failure: how
    /// many were committed, and the failure as C's log tells it, with
    /// SQLite's own words (the failed step, then the rollback's result).
    pub fn apply_all(&mut self, changes: &[DbChange]) -> Result<(), PersistFailure> {
        for (applied, change) in changes.iter().enumerate() {
            if let Err(lines) = self.apply_one(change) {
                return Err(PersistFailure { applied, lines });
            }
        }
        Ok(())
    }

    fn apply_one(&mut self, change: &DbChange) -> Result<(), Vec<String>> {
        let started = std::time::Instant::now();
        let result = (|| -> Result<(), (String, rusqlite::Error)> {
            let step = |what: &'static str| move |e: rusqlite::Error| (what.to_string(), e);
            self.conn
                .execute_batch("BEGIN")
                .map_err(step("begin transaction"))?;
            let mut delete = self
                .conn
                .prepare_cached("DELETE FROM tree WHERE inode = ?1")
                .map_err(step("prepare delete"))?;
            for inode in &change.delete_inodes {
                delete
                    .execute(params![*inode as i64])
                    .map_err(step("delete of an inode"))?;
            }
            let mut replace = self
                .conn
                .prepare_cached(REPLACE)
                .map_err(step("prepare replace"))?;
            for row in &change.write_rows {
                replace
                    .execute(params![
                        row.inode as i64,
                        row.parent as i64,
                        row.version as i64,
                        row.writer as i64,
                        row.mtime as i64,
                        row.entry_type as i64,
                        ToSqlOutput::Borrowed(ValueRef::Text(&row.name)),
                        row.data
                            .as_deref()
                            .map(|d| ToSqlOutput::Borrowed(ValueRef::Blob(d))),
                    ])
                    .map_err(step("write of an inode"))?;
            }
            self.conn
                .execute_batch("COMMIT")
                .map_err(step("commit transaction"))
        })();
        self.transactions += 1;
        self.pages_written += self.take_pages_written();
        self.commit_seconds.observe(started.elapsed().as_secs_f64());
        let Err((what, error)) = result else {
            return Ok(());
        };
        let mut lines = vec![format!("{what} failed: {error}\n")];
        if let Err(e) = self.conn.execute_batch("ROLLBACK") {
            lines.push(format!("rollback transaction failed: {e}\n"));
        }
        Err(lines)
    }

    /// Whether the database takes a write again (after a failed persist):
    /// the `__version__` row rewritten as it is, in a transaction of its
    /// own; then every row, read back.
    pub fn probe(&mut self) -> Result<Vec<Row>, String> {
        // Left without its file by a swap that could not reopen it.
        if self.conn.path().is_none_or(str::is_empty) {
            self.reopen()?;
        }
        let written = self.conn.execute_batch(
            "BEGIN IMMEDIATE; UPDATE tree SET version = version WHERE inode = 0; COMMIT",
        );
        if let Err(e) = written {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e.to_string());
        }
        Self::read_rows(&self.path).map_err(|e| e.to_string())
    }

    /// Pages SQLite wrote since the last call (SQLITE_DBSTATUS_CACHE_WRITE,
    /// reset as it is read).
    fn take_pages_written(&self) -> u64 {
        let (mut current, mut highwater) = (0, 0);
        // SAFETY: a status query on this connection's own handle.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                self.conn.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_CACHE_WRITE,
                &mut current,
                &mut highwater,
                1,
            )
        };
        if rc == rusqlite::ffi::SQLITE_OK {
            current.max(0) as u64
        } else {
            0
        }
    }

    /// Checkpoint the write-ahead log into the main file (at shutdown).
    pub fn checkpoint(&self) {
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
    }

    /// Make every committed change durable against a power loss, not only
    /// a crash of the daemon (what `synchronous=NORMAL` gives each commit,
    /// as in C): the write-ahead log is synced and copied into the main
    /// file, which is synced too. What fsync(2) on a file in /etc/pve does.
    pub fn sync(&self) -> Result<(), String> {
        let (busy, _, _): (i64, i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(FULL)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| e.to_string())?;
        if busy != 0 {
            return Err("the checkpoint could not complete".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pmxcfs-db-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A scratch directory holding a copy of a database C wrote, and the
    /// copy's path.
    fn copy_of_c_database(name: &str) -> (PathBuf, PathBuf) {
        let dir = scratch(name);
        let path = dir.join("config.db");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/functional.db");
        std::fs::copy(&fixture, &path).unwrap();
        (dir, path)
    }

    fn page_size(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_database_written_by_c_gets_small_pages_once_with_its_rows_unchanged() {
        let (dir, path) = copy_of_c_database("convert");
        assert_eq!(page_size(&path), 4096, "C's database as written");
        let before = Database::read(&path).unwrap().unwrap();
        let db = Database::open(&path).unwrap();
        assert_eq!(
            db.page_size_at_open,
            PageSizeAtOpen::Changed {
                old: 4096,
                new: PAGE_SIZE as i64
            }
        );
        drop(db);
        assert_eq!(page_size(&path), PAGE_SIZE as i64);
        assert_eq!(Database::read(&path).unwrap().unwrap(), before);
        // Write-ahead log again, as C opens it.
        let mode: String = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // Once: the next start leaves it alone.
        let db = Database::open(&path).unwrap();
        assert_eq!(db.page_size_at_open, PageSizeAtOpen::Kept);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A swap that could not reopen its file leaves a connection without
    /// it: writes fail (nothing is taken that is not kept), and the probe
    /// opens the file again.
    #[test]
    fn a_database_left_without_its_file_refuses_writes_until_probed() {
        let (dir, path) = copy_of_c_database("reopen");
        let before = Database::read(&path).unwrap().unwrap();
        let mut db = Database::open(&path).unwrap();
        db.conn = Connection::open_in_memory().unwrap();
        let mut row = before.iter().find(|r| r.inode != 0).unwrap().clone();
        row.data = Some(b"kept\n".to_vec());
        let change = DbChange {
            delete_inodes: vec![],
            write_rows: vec![row.clone()],
        };
        assert!(db.apply_all(std::slice::from_ref(&change)).is_err());
        assert_eq!(db.probe().unwrap(), before);
        db.apply_all(&[change]).unwrap();
        drop(db);
        let after = Database::read(&path).unwrap().unwrap();
        assert_eq!(after.iter().find(|r| r.inode == row.inode), Some(&row));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A C database above [`CONVERT_AT_OPEN_LIMIT`] is served as it is at
    /// open and converted later: a copy made beside it, swapped in place
    /// with its rows, its counters and further writes going on.
    #[test]
    fn a_large_c_database_is_converted_after_the_open() {
        let (dir, path) = copy_of_c_database("later");
        {
            // Grown past the limit as C would have: rows of 1 MiB files.
            let c = Connection::open(&path).unwrap();
            let big = vec![b'x'; 1 << 20];
            for i in 0..(CONVERT_AT_OPEN_LIMIT >> 20) + 1 {
                c.execute(
                    REPLACE,
                    params![
                        1000 + i as i64,
                        0,
                        1000 + i as i64,
                        0,
                        0,
                        8,
                        format!("big{i}"),
                        big
                    ],
                )
                .unwrap();
            }
            c.execute("UPDATE tree SET version = 2000 WHERE inode = 0", [])
                .unwrap();
        }
        let before = Database::read(&path).unwrap().unwrap();
        let mut db = Database::open(&path).unwrap();
        assert_eq!(db.page_size_at_open, PageSizeAtOpen::Later);
        assert_eq!(page_size(&path), 4096, "not converted at open");
        let (copy, old) = Database::copy_with_small_pages(&path).unwrap();
        assert_eq!(old, 4096);
        assert_eq!(page_size(&copy), PAGE_SIZE as i64);
        let transactions = db.transactions;
        // Another process with the database open: not swapped, still usable.
        let other = Connection::open(&path).unwrap();
        let _: i64 = other
            .query_row("SELECT count(*) FROM tree", [], |r| r.get(0))
            .unwrap();
        let refused = db.replace_file(&copy).unwrap_err();
        assert!(refused.contains("another process"), "{refused}");
        assert_eq!(page_size(&path), 4096);
        assert!(copy.exists());
        drop(other);
        db.replace_file(&copy).unwrap();
        assert!(!copy.exists());
        assert_eq!(page_size(&path), PAGE_SIZE as i64);
        assert_eq!(db.page_size, PAGE_SIZE as u64);
        assert_eq!(Database::read(&path).unwrap().unwrap(), before);
        // The reopened database takes writes, counted on.
        let mut row = before.iter().find(|r| r.inode == 1000).unwrap().clone();
        row.data = Some(b"after\n".to_vec());
        db.apply_all(&[DbChange {
            delete_inodes: vec![],
            write_rows: vec![row.clone()],
        }])
        .unwrap();
        assert_eq!(db.transactions, transactions + 1);
        drop(db);
        let after = Database::read(&path).unwrap().unwrap();
        assert_eq!(after.iter().find(|r| r.inode == 1000), Some(&row));
        let mode: String = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_database_starts_with_small_pages() {
        let dir = scratch("new");
        let path = dir.join("config.db");
        let db = Database::open(&path).unwrap();
        assert_eq!(db.page_size_at_open, PageSizeAtOpen::Kept);
        drop(db);
        assert_eq!(page_size(&path), PAGE_SIZE as i64);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
