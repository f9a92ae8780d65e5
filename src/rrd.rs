//! The RRD edge: write status samples to the RRD files PVE's graphs read
//! (spec §3.8), through rrdcached's socket when it answers, else directly
//! with librrd. Which file and which values is the core's decision
//! (`core::rrd`).

use std::ffi::{c_char, c_int, c_ulong, CString};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::logline::Subsystem;
use crate::core::rrd::{rrd_update, RrdUpdate, STEP};
use crate::log;

/// librrd, loaded the first time a sample cannot go through rrdcached.
/// PVE nodes always run rrdcached, so they never load it; and it is
/// large (cairo, pango, glib, X11, ICU come with it: about 6 MB of
/// resident memory from the start if it were linked).
struct Librrd {
    create: unsafe extern "C" fn(
        *const c_char,
        c_ulong,
        libc::time_t,
        c_int,
        *const *const c_char,
    ) -> c_int,
    update:
        unsafe extern "C" fn(*const c_char, *const c_char, c_int, *const *const c_char) -> c_int,
    get_error: unsafe extern "C" fn() -> *const c_char,
    clear_error: unsafe extern "C" fn(),
}

/// The shared object the Debian package depends on (librrd8).
const LIBRRD: &str = "librrd.so.8";

fn librrd() -> Result<&'static Librrd, String> {
    static LOADED: std::sync::OnceLock<Result<Librrd, String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let name = CString::new(LIBRRD).expect("no NUL");
            // SAFETY: dlopen/dlsym of librrd's documented functions, with
            // their C signatures; the handle is never closed.
            unsafe {
                let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
                if handle.is_null() {
                    let e = libc::dlerror();
                    let why = if e.is_null() {
                        String::new()
                    } else {
                        std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
                    };
                    return Err(format!("cannot load {LIBRRD}: {why}"));
                }
                let sym = |n: &str| -> Result<*mut libc::c_void, String> {
                    let c = CString::new(n).expect("no NUL");
                    let p = libc::dlsym(handle, c.as_ptr());
                    if p.is_null() {
                        Err(format!("{LIBRRD} has no {n}"))
                    } else {
                        Ok(p)
                    }
                };
                Ok(Librrd {
                    create: std::mem::transmute::<*mut libc::c_void, _>(sym("rrd_create_r")?),
                    update: std::mem::transmute::<*mut libc::c_void, _>(sym("rrd_update_r")?),
                    get_error: std::mem::transmute::<*mut libc::c_void, _>(sym("rrd_get_error")?),
                    clear_error: std::mem::transmute::<*mut libc::c_void, _>(sym(
                        "rrd_clear_error",
                    )?),
                })
            }
        })
        .as_ref()
        .map_err(|e| e.clone())
}

pub struct RrdWriter {
    /// `/var/lib/rrdcached/db` by default.
    pub dir: PathBuf,
    /// `/var/run/rrdcached.sock` by default.
    pub socket: PathBuf,
}

/// Local midnight today: the start of a new file.
fn local_midnight(now: i64) -> i64 {
    // SAFETY: localtime_r fills the struct we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t = now as libc::time_t;
    unsafe { libc::localtime_r(&t, &mut tm) };
    now - (tm.tm_hour as i64 * 3600 + tm.tm_min as i64 * 60 + tm.tm_sec as i64)
}

fn librrd_error(lib: &Librrd) -> String {
    // SAFETY: librrd returns a pointer to its thread's error string.
    unsafe {
        let e = (lib.get_error)();
        let s = if e.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
        };
        (lib.clear_error)();
        s
    }
}

fn cstrings(args: &[String]) -> Vec<CString> {
    args.iter()
        .filter_map(|a| CString::new(a.as_str()).ok())
        .collect()
}

impl RrdWriter {
    pub fn new(dir: &Path, socket: &Path) -> RrdWriter {
        RrdWriter {
            dir: dir.to_path_buf(),
            socket: socket.to_path_buf(),
        }
    }

    /// Write one `rrd/<key>` sample. Problems are logged, as in C.
    pub fn write(&self, key: &str, value: &[u8], now: i64) {
        let value = String::from_utf8_lossy(pmxcfs_wire::codec::c_str(value)).into_owned();
        let update = match rrd_update(key, &value) {
            Ok(u) => u,
            Err(e) => {
                log::crit(Subsystem::Status, &e);
                return;
            }
        };
        if let Err(e) = self.write_update(&update, now) {
            log::crit(
                Subsystem::Status,
                &format!("RRD update error {}: {e}", update.file),
            );
        }
    }

    fn write_update(&self, u: &RrdUpdate, now: i64) -> Result<(), String> {
        let path = self.dir.join(&u.file);
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .mode(0o750)
                .recursive(true)
                .create(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let file = path.to_string_lossy().into_owned();
        let mut cached = UnixStream::connect(&self.socket).ok();
        if let Some(s) = &cached {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        }
        if !path.exists() {
            let mut args = vec![
                "-s".to_string(),
                STEP.to_string(),
                "-b".to_string(),
                local_midnight(now).to_string(),
            ];
            args.extend(u.kind.schema());
            let created = match cached.as_mut() {
                Some(s) => rrdcached(s, &format!("CREATE {file} {}", args.join(" "))).is_ok(),
                None => false,
            };
            if !created {
                let lib = librrd()?;
                let schema = cstrings(&u.kind.schema());
                let argv: Vec<*const c_char> = schema.iter().map(|c| c.as_ptr()).collect();
                let name = CString::new(file.as_str()).map_err(|e| e.to_string())?;
                // SAFETY: NUL-terminated strings that outlive the call.
                let rc = unsafe {
                    (lib.create)(
                        name.as_ptr(),
                        STEP as c_ulong,
                        local_midnight(now) as libc::time_t,
                        argv.len() as c_int,
                        argv.as_ptr(),
                    )
                };
                if rc != 0 {
                    return Err(format!("create failed: {}", librrd_error(lib)));
                }
            }
        }
        if let Some(s) = cached.as_mut() {
            if rrdcached(s, &format!("UPDATE {file} {}", u.values)).is_ok() {
                return Ok(());
            }
        }
        let lib = librrd()?;
        let values = cstrings(std::slice::from_ref(&u.values));
        let argv: Vec<*const c_char> = values.iter().map(|c| c.as_ptr()).collect();
        let name = CString::new(file.as_str()).map_err(|e| e.to_string())?;
        // SAFETY: as above.
        let rc = unsafe {
            (lib.update)(
                name.as_ptr(),
                std::ptr::null(),
                argv.len() as c_int,
                argv.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(format!("update failed: {}", librrd_error(lib)));
        }
        Ok(())
    }
}

/// One rrdcached command; its status line must not be negative.
fn rrdcached(s: &mut UnixStream, command: &str) -> Result<(), String> {
    s.write_all(format!("{command}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&*s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let status: i64 = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1);
    if status < 0 {
        return Err(line.trim().to_string());
    }
    // A positive status announces that many more lines.
    let mut reader = BufReader::new(&*s);
    for _ in 0..status.min(100) {
        let mut more = String::new();
        if reader.read_line(&mut more).is_err() {
            break;
        }
    }
    Ok(())
}
