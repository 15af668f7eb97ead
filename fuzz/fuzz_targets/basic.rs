//! Decodes the input into a `basic` run (seed, fault intensities, fault
//! schedule) and panics on any violation, so libFuzzer keeps the input.
//! `PAXSIM_FUZZ_BUG=<canary>` fuzzes a known-buggy variant instead, to
//! check that the fuzzer finds it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paxsim::{decode, run_schedule, Keep};

fuzz_target!(|data: &[u8]| {
    let mut bugs = paxos::Bugs::default();
    if let Ok(name) = std::env::var("PAXSIM_FUZZ_BUG") {
        bugs.enable(&name).expect("PAXSIM_FUZZ_BUG names a canary");
    }
    let (seed, cfg, schedule) = decode(data, bugs);
    let r = run_schedule(seed, &cfg, schedule, Keep::Recent);
    if let Some(v) = r.violation {
        panic!("seed {seed}: {v}");
    }
});
