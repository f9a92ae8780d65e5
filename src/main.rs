//! pmxcfs: the Proxmox VE cluster configuration filesystem daemon.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", pmxcfs::daemon::USAGE);
        return;
    }
    let options = match pmxcfs::daemon::parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pmxcfs: {e}\n{}", pmxcfs::daemon::USAGE);
            std::process::exit(1);
        }
    };
    std::process::exit(pmxcfs::daemon::run(options));
}
