//! Which RRD file an `rrd/` status key updates, with which values, and the
//! schema a missing file is created with (spec §3.8). Pure; the `rrd` edge
//! talks to rrdcached or librrd.

/// The three kinds of RRD files PVE keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RrdKind {
    Node,
    Vm,
    Storage,
}

/// One update: the file below the RRD directory, its kind, and the value
/// string for `rrd update` (`timestamp:v1:v2:...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrdUpdate {
    pub file: String,
    pub kind: RrdKind,
    pub values: String,
}

/// Data sources per kind, in order; these are DERIVE, all others GAUGE.
const NODE_DS: [&str; 19] = [
    "loadavg",
    "maxcpu",
    "cpu",
    "iowait",
    "memtotal",
    "memused",
    "swaptotal",
    "swapused",
    "roottotal",
    "rootused",
    "netin",
    "netout",
    "memavailable",
    "arcsize",
    "pressurecpusome",
    "pressureiosome",
    "pressureiofull",
    "pressurememorysome",
    "pressurememoryfull",
];
const VM_DS: [&str; 17] = [
    "maxcpu",
    "cpu",
    "maxmem",
    "mem",
    "maxdisk",
    "disk",
    "netin",
    "netout",
    "diskread",
    "diskwrite",
    "memhost",
    "pressurecpusome",
    "pressurecpufull",
    "pressureiosome",
    "pressureiofull",
    "pressurememorysome",
    "pressurememoryfull",
];
const STORAGE_DS: [&str; 2] = ["total", "used"];
const DERIVE: [&str; 4] = ["netin", "netout", "diskread", "diskwrite"];

/// A new file's step (seconds).
pub const STEP: u32 = 60;

impl RrdKind {
    fn data_sources(self) -> &'static [&'static str] {
        match self {
            RrdKind::Node => &NODE_DS,
            RrdKind::Vm => &VM_DS,
            RrdKind::Storage => &STORAGE_DS,
        }
    }

    /// The `DS:` and `RRA:` arguments of `rrd create`: heartbeat 120, min 0;
    /// AVERAGE and MAX over 1 min × 1440, 30 min × 1440, 6 h × 1440 and
    /// 1 week × 570 rows.
    pub fn schema(self) -> Vec<String> {
        let mut args: Vec<String> = self
            .data_sources()
            .iter()
            .map(|ds| {
                let kind = if DERIVE.contains(ds) {
                    "DERIVE"
                } else {
                    "GAUGE"
                };
                format!("DS:{ds}:{kind}:120:0:U")
            })
            .collect();
        for cf in ["AVERAGE", "MAX"] {
            for (steps, rows) in [(1, 1440), (30, 1440), (360, 1440), (10080, 570)] {
                args.push(format!("RRA:{cf}:0.5:{steps}:{rows}"));
            }
        }
        args
    }
}

/// A node, guest or storage name as it may stand in a path and an
/// rrdcached command: letters, digits, `-`, `_`, `.`, not starting with a
/// dot.
fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A sample value as rrdtool takes it: a number (digits, sign, point,
/// exponent), `U` (unknown) or `N` (now); empty is passed on as C does.
fn is_number_or_unknown(s: &str) -> bool {
    s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'U' | b'N')
        })
}

/// Map a status key (without `rrd/`) and its value to an update, or say
/// why C would refuse it ("RRD update error: unknown/wrong key").
pub fn rrd_update(key: &str, value: &str) -> Result<RrdUpdate, String> {
    let wrong = || format!("RRD update error: unknown/wrong key {key}");
    let value = value.trim_end_matches('\0');
    let (prefix, rest) = key.split_once('/').ok_or_else(wrong)?;
    let (kind, family, ids) = if let Some(v) = prefix.strip_prefix("pve-node-") {
        (RrdKind::Node, v, 1)
    } else if prefix == "pve2-node" {
        (RrdKind::Node, "", 1)
    } else if let Some(v) = prefix.strip_prefix("pve-vm-") {
        (RrdKind::Vm, v, 1)
    } else if prefix == "pve2.3-vm" {
        (RrdKind::Vm, "", 1)
    } else if let Some(v) = prefix.strip_prefix("pve-storage-") {
        (RrdKind::Storage, v, 2)
    } else if prefix == "pve2-storage" {
        (RrdKind::Storage, "", 2)
    } else {
        return Err(wrong());
    };
    let parts: Vec<&str> = rest.split('/').collect();
    // The key comes from any peer and names a file under the RRD
    // directory and an rrdcached command line: node, guest and storage
    // names only (no "..", no white space or line breaks).
    if parts.len() != ids
        || !parts.iter().all(|p| is_safe_name(p))
        || family.is_empty() && prefix.starts_with("pve-")
        || !is_safe_name(family) && !family.is_empty()
    {
        return Err(wrong());
    }
    let (dir, skip, columns) = match kind {
        RrdKind::Node => ("pve-node-9.0", 2, NODE_DS.len()),
        RrdKind::Vm => ("pve-vm-9.0", 4, VM_DS.len()),
        RrdKind::Storage => ("pve-storage-9.0", 0, STORAGE_DS.len()),
    };
    let fields: Vec<&str> = value.split(':').skip(skip).collect();
    if fields.len() < 2 {
        return Err(format!("RRD update error: too few values for {key}"));
    }
    // timestamp + data columns: the old formats are padded with U, other
    // formats cut to the current schema.
    let mut values: Vec<&str> = fields.into_iter().take(1 + columns).collect();
    if !values.iter().all(|v| is_number_or_unknown(v)) {
        return Err(format!("RRD update error: bad value for {key}"));
    }
    while values.len() < 1 + columns {
        values.push("U");
    }
    Ok(RrdUpdate {
        file: format!("{dir}/{rest}"),
        kind,
        values: values.join(":"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_keys_and_values_cannot_leave_the_rrd_directory_or_inject_commands() {
        let ok = "1700000000:1:0.5:4:8:2:1024:512:100:50:10:5:1:2:3:4";
        assert!(rrd_update("pve2-node/n1", ok).is_ok());
        for key in [
            "pve2-node/..",
            "pve2-node/.hidden",
            "pve2-storage/../x",
            "pve2-storage/n1/..",
            "pve2-node/n1 FLUSHALL",
            "pve2-node/n1\nFLUSHALL",
            "pve-node-9.0 x/n1",
        ] {
            assert!(rrd_update(key, ok).is_err(), "{key:?}");
        }
        for value in [
            "1700000000:1 2:3",
            "1700000000:1\nFLUSH:2",
            "1700000000:../x:2",
        ] {
            assert!(rrd_update("pve2-node/n1", value).is_err(), "{value:?}");
        }
        assert!(rrd_update("pve2-node/n1", "1700000000:U:N:1e5:-2.5").is_ok());
    }

    #[test]
    fn node_keys() {
        // captures/s4-status-and-log/expected/node1.rrd.txt
        let v = "3617:0:1795235930:0.11:2:0.0131:0.0004:8253411328:2148532224:1073737728:0:101203873792:5402251264:123456790:98765433\0";
        let u = rrd_update("pve2-node/capnode1", v).unwrap();
        assert_eq!(u.file, "pve-node-9.0/capnode1");
        assert_eq!(u.kind, RrdKind::Node);
        let fields: Vec<&str> = u.values.split(':').collect();
        assert_eq!(fields.len(), 20);
        assert_eq!(fields[0], "1795235930");
        assert_eq!(&fields[13..], ["U"; 7]);
    }

    #[test]
    fn vm_and_storage_keys() {
        let u = rrd_update("pve2.3-vm/100", "86400:vm100:running:0:1795235930:2:0.0123:2147483648:1073741824:34359738368:0:1000:2000:3000:4000").unwrap();
        assert_eq!(u.file, "pve-vm-9.0/100");
        assert_eq!(u.values.split(':').count(), 18);
        assert!(u.values.starts_with("1795235930:2:0.0123:"));
        let u = rrd_update(
            "pve2-storage/capnode1/local",
            "1795235930:100861726720:5402251265",
        )
        .unwrap();
        assert_eq!(u.file, "pve-storage-9.0/capnode1/local");
        assert_eq!(u.values, "1795235930:100861726720:5402251265");
        // A newer format is cut to the current columns.
        let u = rrd_update("pve-storage-9.1/n/s", "1:2:3:4:5").unwrap();
        assert_eq!(u.values, "1:2:3");
    }

    #[test]
    fn refused_keys() {
        for key in [
            "pve2-vm/100",
            "pve2-node/a/b",
            "pve2-node/",
            "other/x",
            "pve2-storage/n",
            "nokey",
        ] {
            assert!(rrd_update(key, "1:2:3:4").is_err(), "{key}");
        }
    }

    #[test]
    fn schemas() {
        let node = RrdKind::Node.schema();
        assert_eq!(node.iter().filter(|a| a.starts_with("DS:")).count(), 19);
        assert!(node.contains(&"DS:netin:DERIVE:120:0:U".to_string()));
        assert!(node.contains(&"DS:loadavg:GAUGE:120:0:U".to_string()));
        assert!(node.contains(&"RRA:MAX:0.5:10080:570".to_string()));
        let vm = RrdKind::Vm.schema();
        assert!(vm.contains(&"DS:diskwrite:DERIVE:120:0:U".to_string()));
        assert_eq!(vm.iter().filter(|a| a.starts_with("DS:")).count(), 17);
        assert_eq!(RrdKind::Storage.schema().len(), 2 + 8);
    }
}
