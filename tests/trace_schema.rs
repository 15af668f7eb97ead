//! The trace's contract: every record that `--trace json` writes, for every
//! scenario and for a user's protocol (the caspaxos example), validates
//! against the versioned JSON Schema `sim/schema/paxsim-trace-1.json`; the
//! built-in scenarios' payloads validate against their own definitions in
//! it; the runs produce every event kind, crash cause, drop reason and
//! fault kind the schema names (so the schema names nothing the simulator
//! never writes, and the simulator writes nothing it does not name); and
//! message ids pair every delivery with its send.

use jsonschema::Validator;
use paxsim::schema;
use paxsim::tracefile::records;
use paxsim::{run_seed, RunConfig};
use paxsim::{scenario, Keep};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

fn root() -> Value {
    serde_json::from_str(schema::SCHEMA).expect("the schema is JSON")
}

/// A validator of the whole schema (any record), or of one of its
/// definitions (`#/$defs/...`), with every definition in reach.
fn validator(root: &Value, def: Option<&str>) -> Validator {
    let mut s = root.clone();
    if let Some(def) = def {
        let o = s.as_object_mut().unwrap();
        o.remove("oneOf");
        o.insert("$ref".into(), Value::String(def.into()));
    }
    jsonschema::validator_for(&s).expect("the schema compiles")
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

const PAYLOADS: [&str; 6] = ["msg", "write", "note", "timer", "req", "reply"];

/// What the runs produced, to hold against what the schema names.
#[derive(Default)]
struct Seen {
    events: BTreeSet<String>,
    causes: BTreeSet<String>,
    reasons: BTreeSet<String>,
    request_reasons: BTreeSet<String>,
    faults: BTreeSet<String>,
    violations: usize,
}

/// Validates one trace, record by record; `payloads` holds the scenario's
/// own definitions of its payloads, if it has any.
fn check(
    what: &str,
    text: &str,
    all: &Validator,
    payloads: &BTreeMap<&str, Validator>,
    seen: &mut Seen,
) {
    let lines: Vec<&str> = text.lines().collect();
    let mut sends = BTreeMap::new();
    let mut last_at = 0;
    let mut count: BTreeMap<String, u64> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let r: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"));
        if let Err(e) = all.validate(&r) {
            panic!(
                "{what} line {}: {e} at {}: {line}",
                i + 1,
                e.instance_path()
            );
        }
        let record = r["record"].as_str().unwrap();
        let want = match i {
            0 => "header",
            i if i + 1 == lines.len() => "verdict",
            _ => "event",
        };
        assert_eq!(record, want, "{what} line {}", i + 1);
        match record {
            "header" => {
                assert_eq!(r["schema"], schema::ID);
                assert_eq!(r["scripted"], what.starts_with("the counterexample"));
                for t in r["schedule"].as_array().unwrap() {
                    seen.faults
                        .insert(t["fault"]["kind"].as_str().unwrap().into());
                }
            }
            "verdict" => {
                // Its counts are the trace's.
                let n = |kinds: &[&str]| {
                    kinds
                        .iter()
                        .map(|k| count.get(*k).unwrap_or(&0))
                        .sum::<u64>()
                };
                let counts = [
                    ("events", count.values().sum()),
                    ("deliveries", n(&["receive"])),
                    ("drops", n(&["drop", "request_lost", "reply_lost"])),
                    ("duplicates", n(&["duplicate", "request_duplicated"])),
                    ("forged", n(&["forged"])),
                    ("refused", n(&["refused"])),
                ];
                for (field, want) in counts {
                    assert_eq!(r[field], want, "{what}: the verdict's {field}");
                }
                seen.violations += usize::from(!r["violation"].is_null());
            }
            _ => {
                let at = r["at_us"].as_u64().unwrap();
                assert!(at >= last_at, "{what}: time went backwards at {line}");
                last_at = at;
                let kind = r["event"].as_str().unwrap();
                seen.events.insert(kind.into());
                *count.entry(kind.into()).or_default() += 1;
                for field in PAYLOADS {
                    if let (Some(v), Some(p)) = (r.get(field), payloads.get(field)) {
                        if let Err(e) = p.validate(v) {
                            panic!("{what}: `{field}` {e} at {}: {line}", e.instance_path());
                        }
                    }
                }
                let link = || (r["from"].as_u64().unwrap(), r["to"].as_u64().unwrap());
                match kind {
                    "send" => {
                        let id = r["id"].as_u64().unwrap();
                        assert_eq!(r["from"], r["node"], "{what}: {line}");
                        assert!(
                            sends.insert(id, link()).is_none(),
                            "{what}: id twice: {line}"
                        );
                    }
                    "receive" | "drop" | "duplicate" => {
                        let id = r["id"].as_u64().unwrap();
                        let sent = sends.get(&id);
                        assert_eq!(sent, Some(&link()), "{what}: no such send: {line}");
                        if kind == "receive" {
                            assert_eq!(r["to"], r["node"], "{what}: {line}");
                        }
                        if kind == "drop" {
                            seen.reasons.insert(r["reason"].as_str().unwrap().into());
                        }
                    }
                    "request_lost" => {
                        seen.request_reasons
                            .insert(r["reason"].as_str().unwrap().into());
                    }
                    "crash" => {
                        seen.causes.insert(r["cause"].as_str().unwrap().into());
                    }
                    "fault" => {
                        seen.faults
                            .insert(r["fault"]["kind"].as_str().unwrap().into());
                    }
                    _ => {}
                }
            }
        }
    }
}

fn payload_validators(root: &Value, scenario: &str) -> BTreeMap<&'static str, Validator> {
    let defs = &root["$defs"]["scenarios"];
    if defs.get(scenario).is_none() {
        return BTreeMap::new();
    }
    PAYLOADS
        .iter()
        .map(|f| {
            let def = format!("#/$defs/scenarios/{scenario}/{f}");
            (*f, validator(root, Some(&def)))
        })
        .collect()
}

#[test]
fn every_event_of_every_scenario_validates_against_the_schema() {
    scenario::register(&caspaxos_example::CasPaxos).unwrap();
    let root = root();
    let all = validator(&root, None);
    let mut seen = Seen::default();
    // Seeds of the default swarm (which draws every fault kind somewhere),
    // and a failing run of each scenario, for verdicts with a violation.
    let runs = [
        ("basic", 12, "ignore-promised-values", 3),
        ("multi", 8, "learner-votes", 1),
        ("kv", 8, "learner-votes", 1),
        ("caspaxos", 8, "ignore-accepted", 0),
    ];
    let mut per_scenario = BTreeMap::new();
    for (name, seeds, bug, failing) in runs {
        let payloads = payload_validators(&root, name);
        let mut mine = Seen::default();
        let cfg = RunConfig::for_scenario(name);
        for seed in 0..seeds {
            let report = run_seed(seed, &cfg, Keep::All);
            check(
                &format!("{name} seed {seed}"),
                &records(&report),
                &all,
                &payloads,
                &mut mine,
            );
        }
        let mut cfg = cfg.clone();
        cfg.enable_bug(bug).unwrap();
        let report = run_seed(failing, &cfg, Keep::All);
        let what = format!("{name} seed {failing} --bug {bug}");
        assert!(report.violation.is_some(), "{what} passes");
        check(&what, &records(&report), &all, &payloads, &mut mine);
        assert_eq!(mine.violations, 1);
        seen.events.extend(mine.events.iter().cloned());
        seen.causes.extend(mine.causes.iter().cloned());
        seen.reasons.extend(mine.reasons.iter().cloned());
        seen.request_reasons
            .extend(mine.request_reasons.iter().cloned());
        seen.faults.extend(mine.faults.iter().cloned());
        per_scenario.insert(name, mine.events);
    }
    let defs = &root["$defs"];
    let named = |v: &Value| strings(v);
    let event = &defs["event"];
    assert_eq!(seen.events, named(&event["properties"]["event"]["enum"]));
    // The values one field of one event kind may take, as the schema lists them.
    let allowed = |kind: &str, field: &str| {
        let v = event["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["properties"]["event"]["const"] == kind)
            .unwrap();
        named(&v["properties"][field]["enum"])
    };
    assert_eq!(seen.causes, allowed("crash", "cause"));
    assert_eq!(seen.reasons, allowed("drop", "reason"));
    assert_eq!(seen.request_reasons, allowed("request_lost", "reason"));
    let faults: BTreeSet<String> = defs["fault"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["kind"]["const"].as_str().unwrap().into())
        .collect();
    assert_eq!(seen.faults, faults);
    // Each scenario on its own: everything but what it cannot do.
    let cannot = |name| -> &[&str] {
        match name {
            // Proposers are their own clients (no clients' network, no
            // replies); no hostile input, no disks to lose.
            "basic" => &[
                "complete",
                "forged",
                "rebuilding",
                "refused",
                "reply",
                "reply_lost",
                "request_duplicated",
                "request_lost",
                "retry",
            ],
            // A user's minimal protocol: no notes, no hostile input, no
            // disks to lose.
            "caspaxos" => &["forged", "note", "rebuilding", "refused"],
            _ => &[],
        }
    };
    for (name, events) in per_scenario {
        let missing: BTreeSet<String> = named(&event["properties"]["event"]["enum"])
            .difference(&events)
            .cloned()
            .collect();
        let expected = cannot(name).iter().map(|s| s.to_string()).collect();
        assert_eq!(
            missing, expected,
            "{name}: the event kinds it did not write"
        );
    }
}

/// The schema catches what it is for: a trace record with a wide integer as
/// a number, a message without its id, an event on no node with an
/// incarnation, an unknown field or event kind, a failed verdict marked ok;
/// and a built-in payload with a variant not in snake_case, a slot as a
/// number or a field missing.
#[test]
fn the_schema_refuses_what_breaks_the_contract() {
    let root = root();
    let all = validator(&root, None);
    let good = r#"{"record":"event","at_us":5,"node":1,"inc":0,"event":"send","from":1,"to":2,"id":7,"msg":{"kind":"prepare","digest":"12345678901234567890"}}"#;
    let v: Value = serde_json::from_str(good).unwrap();
    assert!(all.is_valid(&v), "{:?}", all.validate(&v).err());
    let bad = [
        good.replace(r#""12345678901234567890""#, "12345678901234567890"),
        good.replace(r#""id":7,"#, ""),
        good.replace(r#""node":1,"inc":0"#, r#""node":null,"inc":0"#),
        good.replace(r#""at_us":5"#, r#""at_us":5,"extra":1"#),
        good.replace(r#""event":"send""#, r#""event":"sent""#),
        r#"{"record":"verdict","ok":true,"violation":{"invariant":"S2","description":"","at_us":1,"node":null,"detail":"","text":""},"events":0,"deliveries":0,"drops":0,"duplicates":0,"forged":0,"refused":0,"sim_time_us":0,"unproven":false,"trace_hash":"0000000000000000"}"#.to_string(),
    ];
    for b in bad {
        let v: Value = serde_json::from_str(&b).unwrap();
        assert!(!all.is_valid(&v), "the schema accepts {b}");
    }
    // A built-in scenario's payloads are exact: an enum's variant in
    // snake_case, its fields, its wide integers as strings.
    let msg = validator(&root, Some("#/$defs/scenarios/multi/msg"));
    let good =
        r#"{"kind":"prepare","ballot":{"round":1,"node":2},"slot":"0","len":0,"digest":"7"}"#;
    assert!(msg.is_valid(&serde_json::from_str(good).unwrap()));
    for b in [
        good.replace(r#""prepare""#, r#""Prepare""#),
        good.replace(r#""slot":"0""#, r#""slot":0"#),
        good.replace(r#","len":0"#, ""),
    ] {
        let v: Value = serde_json::from_str(&b).unwrap();
        assert!(!msg.is_valid(&v), "the multi msg schema accepts {b}");
    }
}

/// A model checker's counterexample, replayed step by step by the engine,
/// is a trace like any other, which says in its header that its time is
/// steps.
#[test]
fn a_model_checkers_counterexample_replayed_validates_too() {
    let root = root();
    let all = validator(&root, None);
    let mut cfg = RunConfig {
        nodes: 3,
        clients: 2,
        ..RunConfig::for_scenario("basic")
    };
    cfg.enable_bug("ignore-promised-values").unwrap();
    cfg.validate().unwrap();
    let basic = scenario::find("basic").unwrap();
    let bounds = paxsim::nemesis::Bounds {
        timers: 0,
        ..Default::default()
    };
    let search = paxsim::engine::Search::states(5_000_000);
    let found = basic.explore(&cfg, bounds, search).unwrap();
    let (_, script) = found.violation.expect("the canary is found");
    cfg.faults = Some(paxsim::nemesis::Faults::NONE);
    let report = basic.run_script(cfg, &script, Keep::All).unwrap();
    let text = records(&report);
    let mut seen = Seen::default();
    let payloads = payload_validators(&root, "basic");
    check("the counterexample", &text, &all, &payloads, &mut seen);
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["scripted"], true);
    assert_eq!(seen.violations, 1);
    // Its time is the steps': the violation comes at the last one.
    let verdict: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(verdict["violation"]["at_us"], script.steps.len());
}
