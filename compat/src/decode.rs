//! `pmxcfs-replay decode`: decode every event of captures, re-encode every
//! message, and count what round-trips byte for byte.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use pmxcfs_wire::{Codec, WireError};

use crate::capture::{read_capture, CaptureError, Event, Record};
use crate::describe::{event_json, event_summary, group_of, Decoded, Group};

/// What happened to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Decoded, and re-encoded to the identical bytes.
    Exact(Decoded),
    /// Decoded, but re-encoding differs first at this offset.
    Mismatch {
        decoded: Decoded,
        offset: usize,
    },
    Undecodable(WireError),
}

/// Decode a message of `group` and compare its re-encoding with the input.
pub fn check_message(group: Group, bytes: &[u8]) -> Outcome {
    match Decoded::decode(group, bytes) {
        Err(e) => Outcome::Undecodable(e),
        Ok(decoded) => {
            let again = decoded.to_bytes();
            if again == bytes {
                Outcome::Exact(decoded)
            } else {
                let offset = again
                    .iter()
                    .zip(bytes)
                    .position(|(a, b)| a != b)
                    .unwrap_or(again.len().min(bytes.len()));
                Outcome::Mismatch { decoded, offset }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub events: usize,
    pub messages: usize,
    pub byte_exact: usize,
    pub undecodable: usize,
}

impl Totals {
    pub fn all_exact(&self) -> bool {
        self.byte_exact == self.messages && self.undecodable == 0
    }

    pub fn line(&self) -> String {
        format!(
            "events: {}, messages: {}, byte-exact: {}, undecodable: {}",
            self.events, self.messages, self.byte_exact, self.undecodable
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// A short label for a capture file: its folder and name.
fn label(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match path.parent().and_then(|p| p.file_name()) {
        Some(dir) => format!("{}/{}", dir.to_string_lossy(), name),
        None => name,
    }
}

/// Decode one file's records, print one line per event, add to `totals`.
/// A damaged file contributes the records before the damage and counts the
/// damage as one undecodable event.
pub fn decode_file(
    path: &Path,
    format: Format,
    out: &mut dyn Write,
    totals: &mut Totals,
) -> std::io::Result<Result<(), CaptureError>> {
    let file = label(path);
    let (records, damage) = match read_capture(path) {
        Ok(r) => (r, None),
        Err(CaptureError::Truncated { records, reason }) => (records, Some(reason)),
        Err(e) => return Ok(Err(e)),
    };
    for (index, record) in records.iter().enumerate() {
        totals.events += 1;
        print_record(&file, index, record, format, out, totals)?;
    }
    if let Some(reason) = damage {
        totals.events += 1;
        totals.undecodable += 1;
        match format {
            Format::Text => writeln!(
                out,
                "{file}:{} UNDECODABLE capture damaged: {reason}",
                records.len()
            )?,
            Format::Json => writeln!(
                out,
                "{}",
                json!({"file": file, "index": records.len(), "status": "undecodable", "error": format!("capture damaged: {reason}")})
            )?,
        }
    }
    Ok(Ok(()))
}

fn print_record(
    file: &str,
    index: usize,
    record: &Record,
    format: Format,
    out: &mut dyn Write,
    totals: &mut Totals,
) -> std::io::Result<()> {
    let event = match Event::decode(&record.data) {
        Ok(e) => e,
        Err(e) => {
            totals.undecodable += 1;
            return match format {
                Format::Text => writeln!(
                    out,
                    "{file}:{index} {:.6} UNDECODABLE event: {e}",
                    record.timestamp()
                ),
                Format::Json => writeln!(
                    out,
                    "{}",
                    json!({"file": file, "index": index, "ts": record.timestamp(), "status": "undecodable", "error": e.to_string()})
                ),
            };
        }
    };
    let outcome = event.message().map(|msg| {
        totals.messages += 1;
        let outcome = check_message(group_of(&event.group), msg);
        match &outcome {
            Outcome::Exact(_) => totals.byte_exact += 1,
            Outcome::Undecodable(_) => totals.undecodable += 1,
            Outcome::Mismatch { .. } => {}
        }
        outcome
    });
    match format {
        Format::Text => {
            let mut line = format!(
                "{file}:{index} {:.6} {}",
                record.timestamp(),
                event_summary(&event)
            );
            match &outcome {
                None => {}
                Some(Outcome::Exact(d)) => {
                    line.push_str(&format!(" | {} [byte-exact]", d.summary()))
                }
                Some(Outcome::Mismatch { decoded, offset }) => line.push_str(&format!(
                    " | {} [MISMATCH at offset {offset}]",
                    decoded.summary()
                )),
                Some(Outcome::Undecodable(e)) => line.push_str(&format!(" | UNDECODABLE {e}")),
            }
            writeln!(out, "{line}")
        }
        Format::Json => {
            let mut v = event_json(&event);
            v.insert("file".into(), json!(file));
            v.insert("index".into(), json!(index));
            v.insert("ts".into(), json!(record.timestamp()));
            match &outcome {
                None => {}
                Some(Outcome::Exact(d)) => {
                    v.insert("message".into(), d.to_json());
                    v.insert("status".into(), json!("byte-exact"));
                }
                Some(Outcome::Mismatch { decoded, offset }) => {
                    v.insert("message".into(), decoded.to_json());
                    v.insert("status".into(), json!("mismatch"));
                    v.insert("mismatch_offset".into(), json!(offset));
                }
                Some(Outcome::Undecodable(e)) => {
                    v.insert("status".into(), json!("undecodable"));
                    v.insert("error".into(), json!(e.to_string()));
                }
            }
            writeln!(out, "{}", Value::Object(v))
        }
    }
}
