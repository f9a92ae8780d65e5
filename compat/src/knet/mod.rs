//! Decoding real corosync 3 / knet packet captures into the CPG event
//! streams each node's clients saw (`pmxcfs-replay wire`).
//!
//! One module per layer, each pure over bytes (knet-wire.md §1, §13):
//! packets (pcap/pcapng → UDP), crypto (knet envelope), link (knet header,
//! defragmentation, decompression), totem (totemsrp messages), order (the
//! agreed order per ring), totempg (packing, groups, service messages) and
//! views (what each node's CPG clients were handed).

pub mod crypto;
pub mod fields;
pub mod forge;
pub mod fuzzing;
pub mod link;
pub mod order;
pub mod packets;
pub mod totem;
pub mod totempg;
pub mod views;

pub use order::Totem;
pub use views::Views;

/// The default knet ports: link L uses 5405 + L, eight links.
pub const DEFAULT_PORTS: std::ops::RangeInclusive<u16> = 5405..=5412;

/// Everything decoded from one capture.
pub struct Decoded {
    pub read: packets::ReadStats,
    pub totem: Totem,
    pub views: Views,
}

#[derive(Debug)]
pub enum WireError {
    File(packets::CaptureFileError),
    NoKnetTraffic,
    WrongKey { datagrams: u64 },
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::File(e) => write!(f, "{e}"),
            WireError::NoKnetTraffic => {
                write!(f, "the capture holds no UDP traffic on the knet ports")
            }
            WireError::WrongKey { datagrams } => write!(
                f,
                "no packet authenticates with the given key ({datagrams} knet datagrams tried)"
            ),
        }
    }
}

/// Decodes a capture file's bytes with the given authkeys.
pub fn decode(
    file: &[u8],
    keys: Vec<Vec<u8>>,
    ports: std::ops::RangeInclusive<u16>,
) -> Result<Decoded, WireError> {
    let (mut datagrams, read) = packets::read_datagrams(file, ports).map_err(WireError::File)?;
    if datagrams.is_empty() {
        return Err(WireError::NoKnetTraffic);
    }
    // pcapng files from several interfaces need not be in time order.
    datagrams.sort_by(|a, b| a.time.total_cmp(&b.time));
    let totem = order::order(&datagrams, keys);
    if totem.stats.authenticated == 0 {
        return Err(WireError::WrongKey {
            datagrams: totem.stats.datagrams,
        });
    }
    let views = views::emulate(&totem);
    Ok(Decoded { read, totem, views })
}
