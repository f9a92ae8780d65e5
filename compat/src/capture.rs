//! CPG event capture files (`captures/FORMAT.md`): one classic pcap file
//! per node, link type USER0, each record one event (the record codec is
//! `pmxcfs_wire::capture`).

use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use pcap_file::pcap::PcapReader;
use pcap_file::{DataLink, TsResolution};
use pmxcfs_wire::codec::Codec;
use pmxcfs_wire::WireError;

pub use pmxcfs_wire::capture::*;

/// One pcap record: when it was observed and its raw event bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub ts_sec: u32,
    pub ts_usec: u32,
    pub data: Vec<u8>,
}

impl Record {
    pub fn event(&self) -> Result<Event, WireError> {
        Event::decode(&self.data)
    }

    pub fn from_event(ts_sec: u32, ts_usec: u32, event: &Event) -> Record {
        Record {
            ts_sec,
            ts_usec,
            data: event.to_bytes(),
        }
    }

    /// The timestamp in seconds, for display.
    pub fn timestamp(&self) -> f64 {
        self.ts_sec as f64 + self.ts_usec as f64 / 1e6
    }
}

/// Why a capture file could not be read.
#[derive(Debug)]
pub enum CaptureError {
    Io(std::io::Error),
    /// Not a pcap file, or not one of this format.
    Format(String),
    /// The records read before the damage, and what the damage was.
    Truncated {
        records: Vec<Record>,
        reason: String,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Io(e) => write!(f, "{e}"),
            CaptureError::Format(s) => write!(f, "{s}"),
            CaptureError::Truncated { records, reason } => {
                write!(f, "damaged after {} records: {reason}", records.len())
            }
        }
    }
}

impl std::error::Error for CaptureError {}

impl From<std::io::Error> for CaptureError {
    fn from(e: std::io::Error) -> Self {
        CaptureError::Io(e)
    }
}

/// Read every record of a capture file.
pub fn read_capture(path: &Path) -> Result<Vec<Record>, CaptureError> {
    let file = File::open(path)?;
    let mut reader = PcapReader::new(BufReader::new(file))
        .map_err(|e| CaptureError::Format(format!("not a pcap file: {e}")))?;
    let header = reader.header();
    if header.datalink != DataLink::USER0 {
        return Err(CaptureError::Format(format!(
            "link type {} is not USER0 (147): not a CPG event capture",
            u32::from(header.datalink)
        )));
    }
    let nanos = header.ts_resolution == TsResolution::NanoSecond;
    let mut records = Vec::new();
    while let Some(packet) = reader.next_raw_packet() {
        match packet {
            Ok(p) => records.push(Record {
                ts_sec: p.ts_sec,
                ts_usec: if nanos { p.ts_frac / 1000 } else { p.ts_frac },
                data: p.data.into_owned(),
            }),
            Err(e) => {
                return Err(CaptureError::Truncated {
                    records,
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(records)
}

/// Write records as a capture file of this format.
pub fn write_capture(path: &Path, records: &[Record]) -> Result<(), CaptureError> {
    let file = File::create(path)?;
    let mut writer = CaptureWriter::new(BufWriter::new(file))?;
    for r in records {
        writer.write(r)?;
    }
    writer.finish()?;
    Ok(())
}

/// Appends records to a capture as they happen.
pub struct CaptureWriter<W: Write> {
    inner: W,
}

impl<W: Write> CaptureWriter<W> {
    pub fn new(mut out: W) -> Result<CaptureWriter<W>, CaptureError> {
        out.write_all(&pcap_file_header())?;
        Ok(CaptureWriter { inner: out })
    }

    pub fn write(&mut self, record: &Record) -> Result<(), CaptureError> {
        self.inner
            .write_all(&pcap_record(record.ts_sec, record.ts_usec, &record.data))?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<W, CaptureError> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// The largest record Wireshark reads for this link type (its
/// WTAP_MAX_PACKET_SIZE_STANDARD); larger ones make it refuse the file.
pub const WIRESHARK_MAX_RECORD: usize = 262_144;

/// Copies a capture for Wireshark: records longer than it reads are cut
/// to [`WIRESHARK_MAX_RECORD`] bytes, their original length kept, so
/// Wireshark shows them as cut and the dissector decodes what is left.
/// Returns (records, records cut).
pub fn copy_for_wireshark(input: &Path, output: &Path) -> Result<(usize, usize), CaptureError> {
    let records = read_capture(input)?;
    let mut out = BufWriter::new(File::create(output).map_err(CaptureError::Io)?);
    out.write_all(&pcap_file_header())
        .map_err(CaptureError::Io)?;
    let mut cut = 0;
    for r in &records {
        let kept = r.data.len().min(WIRESHARK_MAX_RECORD);
        cut += usize::from(kept < r.data.len());
        let mut head = Vec::with_capacity(16);
        head.extend_from_slice(&r.ts_sec.to_le_bytes());
        head.extend_from_slice(&r.ts_usec.to_le_bytes());
        head.extend_from_slice(&(kept as u32).to_le_bytes());
        head.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        out.write_all(&head).map_err(CaptureError::Io)?;
        out.write_all(&r.data[..kept]).map_err(CaptureError::Io)?;
    }
    out.flush().map_err(CaptureError::Io)?;
    Ok((records.len(), cut))
}
