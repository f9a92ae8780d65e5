//! pmxcfs: the Proxmox VE cluster configuration filesystem daemon.

use pmxcfs::cli::{self, Command};

fn main() {
    let command = match cli::parse(std::env::args_os()) {
        Ok(c) => c,
        Err(e) if e.exit_code() == 0 => e.exit(), // --help, --version
        Err(e) => {
            // C's pmxcfs exits 1 on a bad option or an extra argument.
            let _ = e.print();
            std::process::exit(1);
        }
    };
    let code = match command {
        Command::Run(options) => pmxcfs::daemon::run(options),
        Command::CheckDb(path) => pmxcfs::dbtools::check_db(&path),
        Command::RepairDb { input, output } => pmxcfs::dbtools::repair_db(&input, &output),
        Command::ExportDb { database, dir } => pmxcfs::dbtools::export_db(&database, &dir),
    };
    std::process::exit(code);
}
