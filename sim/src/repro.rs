//! Repro files: everything needed to rerun a failure exactly (seed, config
//! with its faults resolved, fault schedule), as JSON.

use crate::config::RunConfig;
use crate::engine::Script;
use crate::nemesis::Schedule;
use crate::scenario::{self, run_schedule, Report};
use crate::trace::Keep;
use checkers::Violation;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format version this build reads and writes.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repro {
    pub paxsim_repro: u32,
    /// A JSON number up to 2^53 - 1, a decimal string above (exact in jq
    /// 1.6 and JavaScript, which round larger numbers); either is read.
    #[serde(with = "exact")]
    pub seed: u64,
    pub config: RunConfig,
    pub schedule: Schedule,
    /// What the run broke when it was saved (informational; replay re-checks).
    #[serde(default)]
    pub violation: Option<Violation>,
    /// The trace fingerprint of the saved run: a replay must match it.
    /// Written as 16 hex digits, as paxsim prints it (a number this large
    /// would be rounded by jq 1.6 or JavaScript editing the file, and the
    /// replay would warn of a change that never happened); older files'
    /// numbers are read too.
    #[serde(default, with = "hex_hash")]
    pub trace_hash: Option<u64>,
    /// A model checker's counterexample (`paxsim check`): the run follows
    /// these steps instead of the seed and the schedule (which is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<Script>,
}

/// Reads a 64-bit integer as a file may hold it: a number, or a string
/// (decimal, or for a trace hash 16 hex digits).
struct Wide {
    hex: bool,
}

impl serde::de::Visitor<'_> for Wide {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self.hex {
            true => write!(f, "16 hex digits (or an unsigned integer)"),
            false => write!(f, "an unsigned integer, as a number or a decimal string"),
        }
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
        let parsed = match self.hex {
            true if v.len() == 16 => u64::from_str_radix(v, 16).ok(),
            true => None,
            false => v.parse().ok(),
        };
        parsed.ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
    }
}

mod exact {
    use super::Wide;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        match *v <= crate::schema::MAX_SAFE {
            true => s.serialize_u64(*v),
            false => s.serialize_str(&v.to_string()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(Wide { hex: false })
    }
}

mod hex_hash {
    use super::Wide;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(h) => s.serialize_str(&format!("{h:016x}")),
            None => s.serialize_none(),
        }
    }

    struct Maybe;

    impl<'de> serde::de::Visitor<'de> for Maybe {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "16 hex digits, or null")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
            d.deserialize_any(Wide { hex: true }).map(Some)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_option(Maybe)
    }
}

impl Repro {
    pub fn from_report(r: &Report) -> Repro {
        Repro {
            paxsim_repro: VERSION,
            seed: r.seed,
            config: r.config.clone(),
            schedule: r.schedule.clone(),
            violation: r.violation.clone(),
            trace_hash: Some(r.trace_hash),
            script: None,
        }
    }

    /// The repro of a scripted run (a replayed counterexample).
    pub fn scripted(r: &Report, script: Script) -> Repro {
        Repro {
            script: Some(script),
            ..Repro::from_report(r)
        }
    }

    /// Runs the file: its script if it has one, else its seed and schedule.
    pub fn run(&self, keep: Keep) -> Result<Report, String> {
        match &self.script {
            Some(script) => {
                scenario::find(&self.config.scenario)?.run_script(self.config.clone(), script, keep)
            }
            None => Ok(run_schedule(
                self.seed,
                &self.config,
                self.schedule.clone(),
                keep,
            )),
        }
    }

    /// Parses and validates a repro file's text; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Repro, String> {
        let r: Repro =
            serde_json::from_str(text).map_err(|e| format!("not a valid repro file: {e}"))?;
        if r.paxsim_repro != VERSION {
            return Err(format!(
                "repro format version {} is not supported (this paxsim reads version {VERSION})",
                r.paxsim_repro
            ));
        }
        r.config
            .validate()
            .map_err(|e| format!("bad config in repro file: {e}"))?;
        if r.config.faults.is_none() {
            return Err("bad config in repro file: faults must be resolved (not null)".into());
        }
        r.config
            .validate_schedule(&r.schedule)
            .map_err(|e| format!("bad schedule in repro file: {e}"))?;
        if r.script.is_some() && !r.schedule.faults.is_empty() {
            return Err(
                "bad repro file: a scripted run has no fault schedule (its steps are the faults)"
                    .into(),
            );
        }
        Ok(r)
    }

    pub fn load(path: &Path) -> Result<Repro, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read repro file {}: {e}", path.display()))?;
        Repro::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes the file as `<dir>/<scenario>-seed-<seed>.json` (a scripted
    /// one as `<dir>/<scenario>-check-<bugs>.json`).
    pub fn save(&self, dir: &Path) -> Result<PathBuf, String> {
        self.save_as(dir, "")
    }

    /// Writes the file as `<dir>/<scenario>-seed-<seed><suffix>.json`.
    pub fn save_as(&self, dir: &Path, suffix: &str) -> Result<PathBuf, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create repro directory {}: {e}", dir.display()))?;
        let name = match &self.script {
            Some(_) => format!(
                "{}-check-{}",
                self.config.scenario,
                self.config.bugs.join("+")
            ),
            None => format!("{}-seed-{}", self.config.scenario, self.seed),
        };
        let path = dir.join(format!("{}{suffix}.json", name.trim_end_matches('-')));
        let text = serde_json::to_string_pretty(self).expect("repro serializes");
        std::fs::write(&path, text + "\n")
            .map_err(|e| format!("cannot write repro file {}: {e}", path.display()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repro(seed: u64) -> Repro {
        let report = crate::scenario::run_seed(seed, &RunConfig::default(), Keep::Recent);
        Repro::from_report(&report)
    }

    /// What jq 1.6 does to a number above 2^53: it goes through a double.
    fn through_a_double(text: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        fn round(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Number(n) => {
                    let f = n.as_f64().unwrap();
                    if let Some(m) = serde_json::Number::from_f64(f) {
                        *n = if f.fract() == 0.0 && f.abs() < 1.8e19 {
                            serde_json::Number::from(f as u64)
                        } else {
                            m
                        };
                    }
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(round),
                serde_json::Value::Object(o) => o.values_mut().for_each(round),
                _ => {}
            }
        }
        let mut v = v;
        round(&mut v);
        v.to_string()
    }

    #[test]
    fn a_repro_file_survives_a_tool_that_reads_numbers_as_doubles() {
        for seed in [7, u64::MAX - 6] {
            let r = repro(seed);
            let text = serde_json::to_string_pretty(&r).unwrap();
            assert!(text.contains(&format!(
                "\"trace_hash\": \"{:016x}\"",
                r.trace_hash.unwrap()
            )));
            let again = Repro::parse(&through_a_double(&text)).unwrap();
            assert_eq!(again, r, "seed {seed}");
        }
        // Without the strings, the hash would not have survived.
        let h = repro(7).trace_hash.unwrap();
        assert!(
            h > crate::schema::MAX_SAFE,
            "hash {h:x} fits a double: pick a seed whose does not"
        );
        let number = format!("{{\"h\":{h}}}");
        assert_ne!(through_a_double(&number), number);
    }

    #[test]
    fn a_fault_after_the_fault_phase_is_refused() {
        let mut r = repro(7);
        let at_us = r.config.fault_phase_us;
        let fault = crate::nemesis::Fault::Heal;
        r.schedule
            .faults
            .push(crate::nemesis::Timed { at_us, fault });
        let e = Repro::parse(&serde_json::to_string(&r).unwrap()).unwrap_err();
        assert!(e.contains("is not in the fault phase"), "{e}");
        r.schedule.faults.last_mut().unwrap().at_us = at_us - 1;
        Repro::parse(&serde_json::to_string(&r).unwrap()).unwrap();
    }

    #[test]
    fn older_files_with_numbers_are_read_and_bad_strings_refused() {
        let r = repro(7);
        let h = r.trace_hash.unwrap();
        let text = serde_json::to_string(&r).unwrap();
        let old = text.replace(&format!("\"{h:016x}\""), &h.to_string());
        assert_eq!(Repro::parse(&old).unwrap(), r);
        let quoted = text.replace("\"seed\":7", "\"seed\":\"7\"");
        assert_eq!(Repro::parse(&quoted).unwrap(), r);
        for (from, to) in [
            (format!("\"{h:016x}\""), "\"xyz\"".to_string()),
            (format!("\"{h:016x}\""), "\"12\"".to_string()),
            ("\"seed\":7".to_string(), "\"seed\":\"seven\"".to_string()),
        ] {
            let e = Repro::parse(&text.replace(&from, &to)).unwrap_err();
            assert!(e.contains("not a valid repro file"), "{e}");
        }
    }
}
