//! Turns arbitrary bytes into a run, for coverage-guided fuzzing: every
//! byte string decodes to *some* valid `(seed, config, schedule)` of a
//! scenario, so the fuzzer explores fault schedules rather than parse errors.
//!
//! Layout: 8 bytes of seed; 1 of cluster size (3–7); 2 of workload (clients,
//! operations; kept small, at most 4 clients x 64 operations, so that the
//! fuzzer spends its time on schedules); 8 of fault intensities; then 6
//! bytes per scheduled fault (2 of time, 1 of kind among those the
//! scenario's protocol faces, 1 of node or side, 2 of parameter: pause
//! length, clock skew and rate, flipped bit). Clock rates stay within the
//! drift the protocol tolerates. Missing bytes read as zero. The BUGGIFY
//! knobs come from the seed, as `plan` draws them.

use crate::config::RunConfig;
use crate::nemesis::{Fault, Faults, Schedule, Timed, KINDS};
use crate::scenario;

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

/// Decodes `data` into a run of the scenario named `name` with `bugs` on.
/// Errors only if the scenario or a bug is unknown.
pub fn decode(
    data: &[u8],
    name: &str,
    bugs: &[&str],
) -> Result<(u64, RunConfig, Schedule), String> {
    let s = scenario::find(name)?;
    let mut base = s.defaults();
    for b in bugs {
        base.enable_bug(b)?;
    }
    let caps = s.caps(&base);
    let mut b = Bytes(data);
    let seed = b.u64();
    let nodes = 3 + b.u8() % 5;
    let clients = 1 + b.u8() % 4;
    let ops = 1 + u32::from(b.u8() % 64);
    let mut faults = Faults {
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
    if !caps.disk_loss {
        faults.torn_permille = 0;
        faults.snapshot_crash_permille = 0;
    }
    let mut cfg = RunConfig {
        nodes,
        clients: clients.min(nodes),
        ops: if base.ops > 1 { ops } else { base.ops },
        faults: Some(faults),
        ..base.clone()
    };
    if cfg.validate().is_err() {
        // The scenario's own limits: keep its default shape.
        cfg.nodes = base.nodes;
        cfg.clients = base.clients;
        cfg.ops = base.ops;
    }
    // The seed's BUGGIFY knobs, as `plan` draws them.
    scenario::draw_buggify(seed, &mut cfg);
    let n = cfg.machines();
    let kinds: Vec<usize> = (0..KINDS)
        .filter(|&k| Fault::kind_supported(k, &caps))
        .collect();
    let drift = caps.drift_bound_ppm.unwrap_or(200_000) as i64;
    let phase = cfg.fault_phase_us;
    let mut out = Vec::new();
    while !b.0.is_empty() && out.len() < 64 {
        let at_us = (b.u16() as u64 * 32).min(phase - 1);
        let kind = b.u8();
        let x = b.u8();
        let param = b.u16();
        let node = x % n;
        let all = (1u16 << n) - 1;
        let extra = kind / 14;
        let fault = match kinds[kind as usize % kinds.len()] {
            0 => Fault::Crash { node },
            1 => Fault::Restart { node },
            2 => Fault::Partition {
                side: 1 + (x as u16 % (all - 1)),
            },
            3 => Fault::OneWay {
                from: node,
                to: (node + 1 + extra % (n - 1)) % n,
            },
            4 => Fault::Heal,
            5 => Fault::Slow { node },
            6 => Fault::Fast { node },
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
                // Any bit of the record: two more bytes (`flip_bit` takes
                // them modulo the record's length in bits).
                bit: u32::from(b.u16()),
            },
            13 => Fault::Wipe { node },
            kind => {
                // Membership (with spares only: the kinds are offered then).
                let spare = cfg.nodes + x % cfg.spares.max(1);
                match kind {
                    14 => Fault::Join { node: spare },
                    15 => Fault::Leave { node },
                    16 => Fault::LeaveLeader,
                    _ => Fault::Replace {
                        old: 1 << node,
                        new: 1 << spare,
                    },
                }
            }
        };
        out.push(Timed { at_us, fault });
    }
    out.sort_by_key(|t| t.at_us);
    Ok((seed, cfg, Schedule { faults: out }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::run_schedule;
    use crate::Keep;
    use rand::{Rng, SeedableRng};

    fn bytes(rng: &mut rand_chacha::ChaCha8Rng, len: usize) -> Vec<u8> {
        (0..len).map(|_| rng.gen()).collect()
    }

    #[test]
    fn every_byte_string_decodes_to_a_valid_run_reaching_every_fault_kind() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for s in scenario::all() {
            let mut kinds = std::collections::BTreeSet::new();
            for len in 0..400 {
                let data = bytes(&mut rng, len);
                let (_, cfg, sched) = decode(&data, s.name(), &[]).unwrap();
                assert_eq!(cfg.scenario, s.name());
                cfg.validate().unwrap();
                cfg.validate_schedule(&sched).unwrap();
                kinds.extend(sched.faults.iter().map(|t| t.fault.kind_index()));
            }
            // Every fault kind the protocol faces is reachable from some input.
            let caps = s.caps(&s.defaults());
            let faced = (0..KINDS).filter(|&k| Fault::kind_supported(k, &caps));
            assert_eq!(kinds.len(), faced.count(), "{}: {kinds:?}", s.name());
        }
    }

    #[test]
    fn decoded_runs_of_the_correct_protocols_pass_and_canaries_are_caught() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for (name, bug, runs) in [
            ("basic", "ignore-promised-values", 300),
            ("kv", "deposed-leader-writes", 40),
        ] {
            for _ in 0..runs {
                let len = rng.gen_range(0..150);
                let (seed, cfg, sched) = decode(&bytes(&mut rng, len), name, &[]).unwrap();
                let r = run_schedule(seed, &cfg, sched, Keep::Recent);
                assert!(r.violation.is_none(), "{name}: {:?}", r.violation);
            }
            let caught = (0..runs).any(|_| {
                let len = rng.gen_range(0..150);
                let (seed, cfg, sched) = decode(&bytes(&mut rng, len), name, &[bug]).unwrap();
                run_schedule(seed, &cfg, sched, Keep::Recent)
                    .violation
                    .is_some()
            });
            assert!(caught, "{name}: {bug} never caught");
        }
    }

    #[test]
    fn unknown_scenarios_and_bugs_are_errors() {
        assert!(decode(&[], "paxos-made-complex", &[])
            .unwrap_err()
            .contains("unknown scenario"));
        assert!(decode(&[], "basic", &["no-such-bug"])
            .unwrap_err()
            .contains("no-such-bug"));
    }
}
