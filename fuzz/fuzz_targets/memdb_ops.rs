#![no_main]

use libfuzzer_sys::fuzz_target;

// Arbitrary changes from peers and local users against the tree's
// invariants (the rows load, as `--check-db` checks them, and equal what
// memory holds); CI runs the same harness as a property test.
fuzz_target!(|data: &[u8]| pmxcfs::core::fuzzing::memdb_ops(data));
