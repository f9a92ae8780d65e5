//! pmxcfs-replay's command line: help for each subcommand, --version, and
//! usage errors (unknown options, missing or absent inputs) with exit 2
//! and a word on standard error.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pmxcfs-replay"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_for_every_subcommand_and_the_version() {
    let top = run(&["--help"]);
    assert_eq!(top.status.code(), Some(0));
    let text = String::from_utf8_lossy(&top.stdout);
    for sub in ["decode", "check", "wire", "for-wireshark", "shadow"] {
        assert!(text.contains(sub), "{sub} missing from:\n{text}");
        let help = run(&[sub, "--help"]);
        assert_eq!(help.status.code(), Some(0), "{sub} --help");
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(help.contains("Usage: pmxcfs-replay"), "{help}");
    }
    // The long text that once lived in a source comment.
    let shadow = String::from_utf8_lossy(&run(&["shadow", "--help"]).stdout).into_owned();
    assert!(
        shadow.contains("This command line is a contract"),
        "{shadow}"
    );
    assert!(
        shadow.contains("--authkey") && shadow.contains("--fresh"),
        "{shadow}"
    );
    let v = run(&["--version"]);
    assert_eq!(v.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("pmxcfs-replay {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2_with_a_word() {
    let cases: &[&[&str]] = &[
        &[],
        &["nonsense"],
        &["check", "--bogus", "."],
        &["check"],
        &["check", "/does/not/exist"],
        &["decode"],
        &["decode", "/does/not/exist.pcap"],
        &["wire", "capture.pcapng"],
        &[
            "wire",
            "--authkey",
            "/does/not/exist",
            "/does/not/exist.pcapng",
        ],
        &["wire", "--authkey", "k", "--ports", "9-1", "c"],
        &["shadow", "--authkey", "k", "--node", "1", "c"],
        &[
            "shadow",
            "--authkey",
            "k",
            "--db",
            "d",
            "--fresh",
            "--node",
            "1",
            "c",
        ],
        &["for-wireshark", "only-one"],
    ];
    for args in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: nothing said");
    }
}
