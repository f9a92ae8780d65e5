//! pmxcfs: the Proxmox VE cluster configuration filesystem daemon.

fn main() {
    eprintln!("pmxcfs: the filesystem daemon is not built yet; see README.md");
    std::process::exit(1);
}
