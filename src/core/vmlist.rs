//! The vmlist (spec §2.5.2, §3.6.3): which node owns which VMID, with the
//! version counters PVE's Perl code uses to invalidate its caches.

use std::collections::HashMap;
use std::sync::Arc;

use super::paths::{VmConfigPath, VmType};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmInfo {
    /// Shared by the VMs of a node after a rebuild (a large cluster has
    /// tens of thousands of guests on a few nodes).
    pub node: Arc<[u8]>,
    pub vmtype: VmType,
    /// Taken from a counter over all registrations.
    pub version: u32,
}

#[derive(Clone, Debug, Default)]
pub struct VmList {
    vms: HashMap<u32, VmInfo>,
    /// `vmlist_version`: bumped on every register, delete and rebuild.
    version: u32,
    /// The per-VM version counter, never reset.
    counter: u32,
}

impl VmList {
    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn get(&self, vmid: u32) -> Option<&VmInfo> {
        self.vms.get(&vmid)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u32, &VmInfo)> {
        self.vms.iter()
    }

    pub fn len(&self) -> usize {
        self.vms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vms.is_empty()
    }

    fn insert(&mut self, vmid: u32, node: Arc<[u8]>, vmtype: VmType) {
        self.counter = self.counter.wrapping_add(1);
        self.vms.insert(
            vmid,
            VmInfo {
                node,
                vmtype,
                version: self.counter,
            },
        );
    }

    /// A VM config was written, created or renamed into place.
    pub fn register(&mut self, vmid: u32, node: Vec<u8>, vmtype: VmType) {
        self.insert(vmid, node.into(), vmtype);
        self.version = self.version.wrapping_add(1);
    }

    pub fn delete(&mut self, vmid: u32) {
        self.vms.remove(&vmid);
        self.version = self.version.wrapping_add(1);
    }

    /// Rebuild from the tree's VM configs, each getting a new version.
    /// Fails with the VMID configured twice.
    ///
    /// The recordings fix when `vmlist_version` moves: three C nodes that
    /// rebuilt different numbers of times on trees without VMs all report
    /// the same value, while a node rebuilding on trees with VMs counts each
    /// rebuild once. So a rebuild counts only when it has something to say:
    /// the new list or the old one is non-empty.
    pub fn rebuild(&mut self, configs: Vec<VmConfigPath>) -> Result<(), u32> {
        let mut seen = HashMap::with_capacity(configs.len());
        for vm in &configs {
            if seen.insert(vm.vmid, ()).is_some() {
                return Err(vm.vmid);
            }
        }
        drop(seen);
        let had_vms = !self.vms.is_empty();
        self.vms.clear();
        self.vms.reserve(configs.len());
        let mut nodes: HashMap<Vec<u8>, Arc<[u8]>> = HashMap::new();
        for vm in configs {
            let node = nodes
                .entry(vm.node)
                .or_insert_with_key(|n| Arc::from(n.as_slice()))
                .clone();
            self.insert(vm.vmid, node, vm.vmtype);
        }
        if had_vms || !self.vms.is_empty() {
            self.version = self.version.wrapping_add(1);
        }
        Ok(())
    }
}
