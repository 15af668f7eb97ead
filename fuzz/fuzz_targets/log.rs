//! Decodes the input into a `kv` run (or `multi` with
//! `PAXSIM_FUZZ_SCENARIO=multi`): seed, cluster size, workload, fault
//! intensities and a schedule over all fourteen fault kinds. Panics on any
//! violation, so libFuzzer keeps the input. `PAXSIM_FUZZ_BUG=<canary>`
//! fuzzes a known-buggy variant of the log or the service instead.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paxsim::{decode_log, run_schedule, Keep, Scenario};

fuzz_target!(|data: &[u8]| {
    let scenario = match std::env::var("PAXSIM_FUZZ_SCENARIO").as_deref() {
        Ok("multi") => Scenario::Multi,
        Ok("kv") | Err(_) => Scenario::Kv,
        Ok(other) => panic!("PAXSIM_FUZZ_SCENARIO is {other:?}: use multi or kv"),
    };
    let mut bugs = multipaxos::Bugs::default();
    if let Ok(name) = std::env::var("PAXSIM_FUZZ_BUG") {
        bugs.enable(&name).expect("PAXSIM_FUZZ_BUG names a log canary");
    }
    let (seed, cfg, schedule) = decode_log(data, scenario, bugs);
    let r = run_schedule(seed, &cfg, schedule, Keep::Recent);
    if let Some(v) = r.violation {
        panic!("{} seed {seed}: {v}", scenario.name());
    }
});
