//! Decodes the input into a `basic` run (seed, fault intensities, fault
//! schedule) and panics on any violation, so libFuzzer keeps the input.
//! `PAXSIM_FUZZ_BUG=<canary>` fuzzes a known-buggy variant instead, to
//! check that the fuzzer finds it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paxsim::{decode, run_schedule, Keep};

fuzz_target!(|data: &[u8]| {
    let bug = std::env::var("PAXSIM_FUZZ_BUG").ok();
    let bugs: Vec<&str> = bug.iter().map(String::as_str).collect();
    let (seed, cfg, schedule) = decode(data, "basic", &bugs).expect("PAXSIM_FUZZ_BUG names a canary");
    let r = run_schedule(seed, &cfg, schedule, Keep::Recent);
    if let Some(v) = r.violation {
        panic!("seed {seed}: {v}");
    }
});
