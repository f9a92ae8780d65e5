//! The Debian packages of the project (built by `scripts/build-deb.sh`) and
//! a stand-in for Proxmox's pve-cluster package, for the package and
//! runbook tests.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ok(script: &str) {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn debs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/deb")
}

/// The built package file of `name`.
pub fn deb(name: &str) -> PathBuf {
    let prefix = format!("{name}_");
    fs::read_dir(debs())
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .unwrap_or_else(|| {
            panic!("no {name} package in target/deb: run scripts/build-deb.sh first (scripts/test.sh does)")
        })
}

/// The unit of pve-cluster (spec §7.7), as the stand-in package ships it.
pub const PVE_CLUSTER_UNIT: &str = "[Unit]
Description=The Proxmox VE cluster filesystem
ConditionFileIsExecutable=/usr/bin/pmxcfs
Wants=corosync.service
Wants=rrdcached.service
Before=corosync.service
Before=cron.service
After=network.target
After=sys-fs-fuse-connections.mount
After=time-sync.target
After=rrdcached.service
DefaultDependencies=no
Before=shutdown.target
Conflicts=shutdown.target

[Service]
ExecStart=/usr/bin/pmxcfs
KillMode=mixed
Restart=on-failure
TimeoutStopSec=10
Type=forking
PIDFile=/run/pve-cluster.pid

[Install]
WantedBy=multi-user.target
";

/// What Proxmox's pve-cluster 9.1.6 ships (its `debian/pve-cluster.install`,
/// the man page compressed by dh, and the unit), besides the daemon: a
/// package of ours that ships any of these paths without diverting it
/// fails to install beside the stand-in.
pub const PVE_CLUSTER_FILES: [&str; 6] = [
    "usr/bin/create_pmxcfs_db",
    "usr/share/man/man8/pmxcfs.8.gz",
    "usr/lib/sysctl.d/10-pve.conf",
    "usr/share/perl5/PVE/Cluster.pm",
    "usr/share/perl5/PVE/Cluster/IPCConst.pm",
    "usr/share/perl5/PVE/IPCC.pm",
];

/// A stand-in for Proxmox's pve-cluster package: /usr/bin/pmxcfs,
/// pve-cluster.service and every other file of pve-cluster's list
/// ([`PVE_CLUSTER_FILES`], each saying which version shipped it). The
/// binary is `daemon` (one that runs a node), or a script that says which
/// version it is.
pub fn stand_in_pve_cluster(dir: &Path, version: &str, daemon: Option<&Path>) -> PathBuf {
    let root = dir.join(format!("pve-cluster-{version}"));
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("lib/systemd/system")).unwrap();
    fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: pve-cluster\nVersion: {version}\nArchitecture: all\nMaintainer: tests <tests@example.org>\nDescription: stand-in for Proxmox's pve-cluster (tests)\n"
        ),
    )
    .unwrap();
    match daemon {
        Some(binary) => {
            fs::copy(binary, root.join("usr/bin/pmxcfs")).unwrap();
        }
        None => fs::write(
            root.join("usr/bin/pmxcfs"),
            format!("#!/bin/sh\necho \"C pmxcfs {version}\"\n"),
        )
        .unwrap(),
    }
    ok(&format!(
        "chmod 755 {}",
        root.join("usr/bin/pmxcfs").display()
    ));
    for file in PVE_CLUSTER_FILES {
        let path = root.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = format!("pve-cluster {version}: {file}\n");
        if file.ends_with(".gz") {
            ok(&format!(
                "printf '%s' '{text}' | gzip -9n > {}",
                path.display()
            ));
        } else {
            fs::write(&path, text).unwrap();
        }
    }
    ok(&format!(
        "chmod 755 {}",
        root.join("usr/bin/create_pmxcfs_db").display()
    ));
    fs::write(
        root.join("lib/systemd/system/pve-cluster.service"),
        PVE_CLUSTER_UNIT,
    )
    .unwrap();
    let deb = dir.join(format!("pve-cluster_{version}_all.deb"));
    ok(&format!(
        "dpkg-deb --root-owner-group --build {} {} >/dev/null",
        root.display(),
        deb.display()
    ));
    deb
}

/// The files of a package, unpacked.
pub fn unpacked(deb: &Path, dir: &Path) -> PathBuf {
    let out = dir.join(format!(
        "unpacked-{}",
        deb.file_stem().unwrap().to_string_lossy()
    ));
    ok(&format!("dpkg-deb -x {} {}", deb.display(), out.display()));
    out
}
