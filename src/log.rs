//! The log edge: prints the lines the core and the edges decide on, as the
//! C daemon does. With `-f` they go to standard error; as a service (no
//! `-f`) to syslog through `/dev/log` with ident `pmxcfs`, facility daemon
//! and the pid, so the journal shows `pmxcfs[PID]: [dcdb] notice: …`.
//! Syslog is opened before the daemon forks and before anything is logged,
//! so no line is lost in between.
//!
//! Every line is `[SUBSYSTEM] LEVEL: MESSAGE`. Control characters are
//! printed as `#ddd` (decimal), as C's logger prints them (SQLite's messages
//! end in a newline: `…disk is full#010`). Debug lines only appear with
//! `-d` or after `1` was written to `/etc/pve/.debug`; while debug is on,
//! every line also names the place in our code that decided on it, as C's
//! lines name theirs.

use std::ffi::CString;
use std::io::Write;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::core::logline::{Level, LogLine, Subsystem};

static DEBUG: AtomicBool = AtomicBool::new(false);
static SYSLOG: AtomicBool = AtomicBool::new(false);

/// The syslog ident; openlog keeps the pointer, so it lives forever.
const IDENT: &std::ffi::CStr = c"pmxcfs";

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Log to syslog from now on (a daemon without `-f`).
pub fn use_syslog() {
    // SAFETY: IDENT is a static C string; LOG_NDELAY connects to /dev/log
    // at once, before a fork, so the child keeps the connection.
    unsafe {
        libc::openlog(
            IDENT.as_ptr(),
            libc::LOG_PID | libc::LOG_NDELAY,
            libc::LOG_DAEMON,
        )
    };
    SYSLOG.store(true, Ordering::Release);
}

/// Whether lines go to syslog.
pub fn to_syslog() -> bool {
    SYSLOG.load(Ordering::Acquire)
}

/// C's logger prints control characters as `#` and three decimal digits
/// (a newline is `#010`).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (c as u32) < 0x20 || c == '\x7f' {
            out.push_str(&format!("#{:03}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn render(line: &LogLine, debug: bool) -> String {
    let mut text = escape(&line.text);
    if debug {
        let file = line
            .location
            .file()
            .rsplit('/')
            .next()
            .unwrap_or(line.location.file());
        text.push_str(&format!(" ({file}:{})", line.location.line()));
    }
    format!("[{}] {}: {text}", line.subsystem.tag(), line.level.name())
}

/// Print one line.
pub fn emit(line: &LogLine) {
    let debug = debug_enabled();
    if line.level == Level::Debug && !debug {
        return;
    }
    let text = render(line, debug);
    if to_syslog() {
        if let Ok(c) = CString::new(text) {
            // SAFETY: a format string with one %s and a C string for it.
            unsafe { libc::syslog(line.level.priority() as i32, c"%s".as_ptr(), c.as_ptr()) };
        }
    } else {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
}

#[track_caller]
fn at(subsystem: Subsystem, level: Level, text: &str) {
    if level == Level::Debug && !debug_enabled() {
        return;
    }
    emit(&LogLine {
        subsystem,
        level,
        text: text.to_string(),
        location: Location::caller(),
    });
}

#[track_caller]
pub fn crit(subsystem: Subsystem, text: &str) {
    at(subsystem, Level::Crit, text);
}

#[track_caller]
pub fn warning(subsystem: Subsystem, text: &str) {
    at(subsystem, Level::Warning, text);
}

#[track_caller]
pub fn notice(subsystem: Subsystem, text: &str) {
    at(subsystem, Level::Notice, text);
}

#[track_caller]
pub fn info(subsystem: Subsystem, text: &str) {
    at(subsystem, Level::Info, text);
}

#[track_caller]
pub fn debug(subsystem: Subsystem, text: &str) {
    at(subsystem, Level::Debug, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_cs() {
        let line = LogLine::new(
            Subsystem::Database,
            Level::Crit,
            "commit transaction failed: database or disk is full\n",
        );
        assert_eq!(
            render(&line, false),
            "[database] crit: commit transaction failed: database or disk is full#010"
        );
        let debug = render(&line, true);
        assert!(
            debug.starts_with(
                "[database] crit: commit transaction failed: database or disk is full#010 (log.rs:"
            ),
            "{debug}"
        );
    }
}
