//! Turns arbitrary bytes into a run, for coverage-guided fuzzing: every
//! byte string decodes to *some* valid `(seed, config, schedule)`, so the
//! fuzzer explores fault schedules rather than parse errors.
//!
//! [`decode`] (`basic`): 8 bytes of seed; 1 byte of cluster size; 8 bytes
//! of fault intensities; then 4 bytes per scheduled fault (2 of time, 1 of
//! kind, 1 of node or side).
//!
//! [`decode_log`] (`multi`, `kv`): 8 bytes of seed; 1 of cluster size; 2 of
//! workload (clients, operations); 8 of fault intensities; then 6 bytes per
//! scheduled fault (2 of time, 1 of kind among all 14, 1 of node or side,
//! 2 of parameter: pause length, clock skew and rate, flipped bit). Clock
//! rates stay within the drift the leases assume.
//!
//! Missing bytes read as zero.

use crate::config::{RunConfig, Scenario};
use crate::nemesis::{Fault, Faults, Schedule, Timed};
use paxos::Bugs;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, i| acc | (self.u8() as u64) << (8 * i))
    }
}

/// One of the seven `basic` fault kinds (`k < 7`), from a node-or-side byte
/// `x` and a spare byte `extra` (the one-way cut's direction).
fn basic_fault(k: u8, extra: u8, x: u8, nodes: u8) -> Fault {
    let node = x % nodes;
    let all = (1u16 << nodes) - 1;
    match k {
        0 => Fault::Crash { node },
        1 => Fault::Restart { node },
        2 => Fault::Partition {
            side: 1 + (x as u16 % (all - 1)),
        },
        3 => Fault::OneWay {
            from: node,
            to: (node + 1 + extra % (nodes - 1)) % nodes,
        },
        4 => Fault::Heal,
        5 => Fault::Slow { node },
        _ => Fault::Fast { node },
    }
}

/// Decodes `data` into a run of the `basic` scenario with `bugs` on.
pub fn decode(data: &[u8], bugs: Bugs) -> (u64, RunConfig, Schedule) {
    let mut b = Bytes(data);
    let seed = b.u64();
    let nodes = 3 + b.u8() % 7;
    let faults = Faults {
        loss_permille: (b.u8() as u16) * 2 % 501,
        dup_permille: (b.u8() as u16) * 2 % 501,
        long_delay_permille: b.u8() as u16 % 101,
        jitter_us: b.u8() as u64 * 40,
        disk_jitter_us: b.u8() as u64 * 40,
        crash_in_sync_permille: b.u8() as u16 % 101,
        crashes: 0,
        partitions: 0,
        slow_nodes: b.u8() % 2,
        ..Faults::NONE
    };
    let cfg = RunConfig {
        nodes,
        proposers: 3.min(nodes),
        faults: Some(faults),
        bugs,
        ..RunConfig::default()
    };
    let mut out = Vec::new();
    while !b.0.is_empty() && out.len() < 64 {
        let at_us = b.u16() as u64 * 16; // Up to ~1 s: the fault phase.
        let kind = b.u8();
        let x = b.u8();
        let fault = basic_fault(kind % 7, kind / 7, x, nodes);
        out.push(Timed {
            at_us: at_us.min(cfg.fault_phase_us - 1),
            fault,
        });
    }
    out.sort_by_key(|t| t.at_us);
    (seed, cfg, Schedule { faults: out })
}

/// Decodes `data` into a run of `scenario` (`multi` or `kv`) with `bugs` on.
/// Workloads are kept small (at most 4 clients x 64 operations) so that the
/// fuzzer spends its time on schedules.
pub fn decode_log(
    data: &[u8],
    scenario: Scenario,
    bugs: multipaxos::Bugs,
) -> (u64, RunConfig, Schedule) {
    assert!(scenario.is_log(), "decode_log decodes multi and kv runs");
    let mut b = Bytes(data);
    let seed = b.u64();
    let nodes = 3 + b.u8() % 5;
    let base = RunConfig::for_scenario(scenario);
    let clients = 1 + b.u8() % 4;
    let ops = 1 + u32::from(b.u8() % 64);
    let faults = Faults {
        loss_permille: (b.u8() as u16) * 2 % 301,
        dup_permille: (b.u8() as u16) * 2 % 301,
        long_delay_permille: b.u8() as u16 % 101,
        jitter_us: b.u8() as u64 * 40,
        disk_jitter_us: b.u8() as u64 * 40,
        crash_in_sync_permille: b.u8() as u16 % 51,
        torn_permille: (b.u8() as u16) * 4 % 1001,
        snapshot_crash_permille: (b.u8() as u16) * 4 % 1001,
        ..Faults::NONE
    };
    let cfg = RunConfig {
        nodes,
        clients,
        ops,
        faults: Some(faults),
        log_bugs: bugs,
        ..base
    };
    // Leases (kv) assume |rate| <= drift_ppm; without leases any rate is fair.
    let drift = match cfg.log.timing.lease_us {
        0 => 200_000,
        _ => cfg.log.timing.drift_ppm as i64,
    };
    let phase = cfg.fault_phase_us;
    let mut out = Vec::new();
    while !b.0.is_empty() && out.len() < 64 {
        let at_us = (b.u16() as u64 * 32).min(phase - 1); // ~2 s: the fault phase.
        let kind = b.u8();
        let x = b.u8();
        let param = b.u16();
        let node = x % nodes;
        let fault = match kind % 14 {
            k @ 0..=6 => basic_fault(k, kind / 14, x, nodes),
            7 => Fault::CrashLeader,
            8 => Fault::IsolateLeader,
            9 => Fault::RestartDown,
            10 => Fault::Pause {
                node,
                us: 1_000 + param as u64 * 8, // Up to ~0.5 s.
            },
            11 => Fault::Clock {
                node,
                skew_us: (param as u64 & 0xff) * 40_000,
                // Within ±drift: (-128..=127) / 128 of it.
                rate_ppm: (((param as i64 >> 8) - 128) * drift / 128) as i32,
            },
            12 => Fault::BitFlip {
                node,
                record: param as u32,
                bit: kind as u32 / 14 % 64,
            },
            _ => Fault::Wipe { node },
        };
        out.push(Timed { at_us, fault });
    }
    out.sort_by_key(|t| t.at_us);
    (seed, cfg, Schedule { faults: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::run_schedule;
    use crate::Keep;
    use rand::{Rng, SeedableRng};

    #[test]
    fn every_byte_string_decodes_to_a_valid_run() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for len in 0..300 {
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let (_, cfg, sched) = decode(&data, Bugs::default());
            cfg.validate().unwrap();
            sched.validate(cfg.nodes).unwrap();
        }
    }

    #[test]
    fn decoded_runs_of_the_correct_protocol_pass() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        for _ in 0..300 {
            let data: Vec<u8> = (0..rng.gen_range(0..120)).map(|_| rng.gen()).collect();
            let (seed, cfg, sched) = decode(&data, Bugs::default());
            let r = run_schedule(seed, &cfg, sched, Keep::Recent);
            assert!(r.violation.is_none(), "{:?}", r.violation);
        }
    }

    #[test]
    fn every_byte_string_decodes_to_a_valid_log_run() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for scenario in [Scenario::Multi, Scenario::Kv] {
            let mut kinds = std::collections::BTreeSet::new();
            for len in 0..400 {
                let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                let (_, cfg, sched) = decode_log(&data, scenario, Default::default());
                assert_eq!(cfg.scenario, scenario);
                cfg.validate().unwrap();
                cfg.validate_schedule(&sched).unwrap();
                kinds.extend(sched.faults.iter().map(|t| t.fault.kind_index()));
            }
            // Every fault kind is reachable from some input.
            assert_eq!(kinds.len(), crate::nemesis::KINDS, "{kinds:?}");
        }
    }

    #[test]
    fn decoded_log_runs_of_the_correct_service_pass_and_a_canary_is_caught() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut inputs = (0..60).map(|_| {
            let len = rng.gen_range(0..150);
            (0..len).map(|_| rng.gen()).collect::<Vec<u8>>()
        });
        for data in inputs.by_ref().take(40) {
            let (seed, cfg, sched) = decode_log(&data, Scenario::Kv, Default::default());
            let r = run_schedule(seed, &cfg, sched, Keep::Recent);
            assert!(r.violation.is_none(), "{:?}", r.violation);
        }
        let mut bugs = multipaxos::Bugs::default();
        bugs.enable("deposed-leader-writes").unwrap();
        let caught = inputs.any(|data| {
            let (seed, cfg, sched) = decode_log(&data, Scenario::Kv, bugs);
            run_schedule(seed, &cfg, sched, Keep::Recent)
                .violation
                .is_some()
        });
        assert!(caught);
    }

    #[test]
    fn decoded_runs_catch_a_canary() {
        let mut bugs = Bugs::default();
        bugs.enable("ignore-promised-values").unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let caught = (0..300).any(|_| {
            let data: Vec<u8> = (0..rng.gen_range(0..120)).map(|_| rng.gen()).collect();
            let (seed, cfg, sched) = decode(&data, bugs);
            run_schedule(seed, &cfg, sched, Keep::Recent)
                .violation
                .is_some()
        });
        assert!(caught);
    }
}
