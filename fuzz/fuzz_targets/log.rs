//! Decodes the input into a run of `PAXSIM_FUZZ_SCENARIO` (default `kv`;
//! any registered scenario): seed, cluster size, workload, fault
//! intensities and a schedule over every fault kind the protocol faces.
//! Panics on any violation, so libFuzzer keeps the input.
//! `PAXSIM_FUZZ_BUG=<canary>` fuzzes a known-buggy variant instead.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paxsim::{decode, run_schedule, Keep};

fuzz_target!(|data: &[u8]| {
    let scenario = std::env::var("PAXSIM_FUZZ_SCENARIO").unwrap_or_else(|_| "kv".into());
    let bug = std::env::var("PAXSIM_FUZZ_BUG").ok();
    let bugs: Vec<&str> = bug.iter().map(String::as_str).collect();
    let (seed, cfg, schedule) = decode(data, &scenario, &bugs).unwrap_or_else(|e| panic!("{e}"));
    let r = run_schedule(seed, &cfg, schedule, Keep::Recent);
    if let Some(v) = r.violation {
        panic!("{scenario} seed {seed}: {v}");
    }
});
