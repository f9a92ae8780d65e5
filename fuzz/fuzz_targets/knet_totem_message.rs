#![no_main]

use libfuzzer_sys::fuzz_target;
use pmxcfs_compat::knet::fuzzing::{run, Target};

fuzz_target!(|data: &[u8]| run(Target::TotemMessage, data));
