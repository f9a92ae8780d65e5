//! cmap's view of the cluster: its name, config version and nodelist.

use rust_corosync::{cmap, CsError};

use super::ffi::cs_name;
use crate::core::logline::Subsystem;
use crate::core::node::ClusterInfo;
use crate::log;

pub(super) fn read_cmap(h: &cmap::Handle) -> Result<ClusterInfo, CsError> {
    let text = |d: cmap::Data| match d {
        cmap::Data::String(s) => Some(s),
        _ => None,
    };
    let number = |d: &cmap::Data| match d {
        cmap::Data::UInt32(v) => Some(*v as u64),
        cmap::Data::UInt64(v) => Some(*v),
        cmap::Data::Int32(v) => Some(*v as u64),
        _ => None,
    };
    // The cluster name is required (C restarts the service without it).
    let name = text(cmap::get(h, "totem.cluster_name")?).unwrap_or_default();
    let config_version = match cmap::get(h, "totem.config_version") {
        Ok(d) => number(&d).unwrap_or(0),
        Err(e) => {
            log::crit(
                Subsystem::Confdb,
                &format!("cmap_get totem.config_version failed: {}", cs_name(&e)),
            );
            0
        }
    };
    let mut entries: std::collections::BTreeMap<
        String,
        (Option<u32>, Option<String>, Option<String>),
    > = Default::default();
    for item in cmap::CmapIterStart::new(h, "nodelist.node.")? {
        let key = item.key_name().to_string();
        log::debug(Subsystem::Confdb, &format!("cmap {key} = {}", item.data()));
        let mut parts = key.splitn(4, '.');
        let (Some(_), Some(_), Some(n), Some(field)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let e = entries.entry(n.to_string()).or_default();
        match (field, item.data()) {
            ("nodeid", d) => e.0 = number(d).map(|v| v as u32),
            ("name", cmap::Data::String(v)) => e.1 = Some(v.clone()),
            ("ring0_addr", cmap::Data::String(v)) => e.2 = Some(v.clone()),
            _ => {}
        }
    }
    let nodes = entries
        .into_values()
        .filter_map(|(id, name, addr)| Some((id.filter(|i| *i != 0)?, name.or(addr)?)))
        .collect();
    Ok(ClusterInfo {
        name,
        config_version,
        nodes,
    })
}
