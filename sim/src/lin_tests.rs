//! `paxsim lin` on histories our own code writes in each format: seeded
//! clients on an atomic object (each operation takes effect at its
//! completion, so the history is linearizable by construction), and the same
//! history with one read changed to a value no one wrote.

use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One operation of a generated history, in events.
#[derive(Clone, Debug)]
enum Ev {
    /// (process, op, key)
    Invoke(u32, Gen, u32),
    /// (process, op, key, result)
    Ok(u32, Gen, u32, GenRet),
}

#[derive(Clone, Debug)]
enum Gen {
    Read,
    Write(i64),
    Cas(i64, i64),
    Append(String),
}

#[derive(Clone, Debug)]
enum GenRet {
    Read(Option<i64>),
    Text(String),
    Done,
    Cas(bool),
}

/// `n` operations by `procs` processes; `kv`: appends and gets on 3 string
/// keys, else reads, writes and cas on one register. The object is atomic:
/// each operation takes effect when it completes.
fn generate(seed: u64, n: usize, procs: u32, kv: bool) -> Vec<Ev> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut reg: Option<i64> = None;
    let mut text: BTreeMap<u32, String> = BTreeMap::new();
    let mut open: BTreeMap<u32, (Gen, u32)> = BTreeMap::new();
    let mut evs = Vec::new();
    let mut started = 0;
    while started < n || !open.is_empty() {
        let p = rng.gen_range(0..procs);
        match open.remove(&p) {
            None if started < n => {
                let key = rng.gen_range(0..3);
                let op = match (kv, rng.gen_range(0..3)) {
                    (true, 0) => Gen::Read,
                    (true, _) => Gen::Append(format!("x{p}.{started} ")),
                    (false, 0) => Gen::Read,
                    (false, 1) => Gen::Write(rng.gen_range(0..5)),
                    (false, _) => Gen::Cas(rng.gen_range(0..5), rng.gen_range(0..5)),
                };
                evs.push(Ev::Invoke(p, op.clone(), key));
                open.insert(p, (op, key));
                started += 1;
            }
            None => {}
            Some((op, key)) => {
                let ret = match &op {
                    Gen::Read if kv => GenRet::Text(text.get(&key).cloned().unwrap_or_default()),
                    Gen::Read => GenRet::Read(reg),
                    Gen::Write(v) => {
                        reg = Some(*v);
                        GenRet::Done
                    }
                    Gen::Cas(a, b) => {
                        let ok = reg == Some(*a);
                        if ok {
                            reg = Some(*b);
                        }
                        GenRet::Cas(ok)
                    }
                    Gen::Append(s) => {
                        text.entry(key).or_default().push_str(s);
                        GenRet::Done
                    }
                };
                evs.push(Ev::Ok(p, op, key, ret));
            }
        }
    }
    evs
}

/// The history with the first read that saw something made to see a value
/// no one wrote.
fn corrupt(mut evs: Vec<Ev>) -> Vec<Ev> {
    for e in evs.iter_mut() {
        match e {
            Ev::Ok(_, Gen::Read, _, GenRet::Read(v @ Some(_))) => *v = Some(999),
            Ev::Ok(_, Gen::Read, _, GenRet::Text(s)) if !s.is_empty() => {
                *s = "nobody wrote this".into()
            }
            _ => continue,
        }
        return evs;
    }
    panic!("no read saw anything")
}

/// A register event as Jepsen writes it: process, `:type`, `:f`, value.
fn register_event(e: &Ev) -> (u32, &'static str, &'static str, String) {
    let nil = |v: &Option<i64>| v.map_or("nil".into(), |v| v.to_string());
    match e {
        Ev::Invoke(p, op, _) => match op {
            Gen::Read => (*p, ":invoke", ":read", "nil".into()),
            Gen::Write(v) => (*p, ":invoke", ":write", v.to_string()),
            Gen::Cas(a, b) => (*p, ":invoke", ":cas", format!("[{a} {b}]")),
            Gen::Append(_) => unreachable!("a register has no append"),
        },
        Ev::Ok(p, op, _, r) => match (op, r) {
            (Gen::Read, GenRet::Read(v)) => (*p, ":ok", ":read", nil(v)),
            (Gen::Write(v), _) => (*p, ":ok", ":write", v.to_string()),
            // A cas that did not swap fails: in the etcd log, it returned
            // false; in a Jepsen history, it did not take effect.
            (Gen::Cas(a, b), GenRet::Cas(ok)) => {
                let kind = if *ok { ":ok" } else { ":fail" };
                (*p, kind, ":cas", format!("[{a} {b}]"))
            }
            _ => unreachable!("a register's answers"),
        },
    }
}

fn etcd_log(evs: &[Ev]) -> String {
    let mut s = String::from("INFO  jepsen.core - Running test\n");
    for e in evs {
        let (p, kind, f, v) = register_event(e);
        s += &format!("INFO  jepsen.util - {p}\t{kind}\t{f}\t{v}\n");
    }
    s
}

fn jepsen_edn(evs: &[Ev], vector: bool) -> String {
    let mut lines = Vec::new();
    for (i, e) in evs.iter().enumerate() {
        let time = 1_000 * i as u64 + 17;
        let (p, kind, f, v) = register_event(e);
        lines.push(format!(
            "{{:type {kind}, :f {f}, :value {v}, :process {p}, :time {time}, :index {i}}}"
        ));
        if i == 3 {
            lines
                .push("{:type :info, :f :start, :value nil, :process :nemesis, :time 3500}".into());
        }
    }
    match vector {
        true => format!("[{}]\n", lines.join("\n ")),
        false => lines.join("\n") + "\n",
    }
}

fn porcupine_kv_log(evs: &[Ev]) -> String {
    let mut s = String::new();
    for e in evs {
        let line = match e {
            Ev::Invoke(p, Gen::Read, k) => {
                format!("{{:process {p}, :type :invoke, :f :get, :key \"{k}\", :value nil}}")
            }
            Ev::Invoke(p, Gen::Append(v), k) => {
                format!("{{:process {p}, :type :invoke, :f :append, :key \"{k}\", :value \"{v}\"}}")
            }
            Ev::Ok(p, Gen::Read, k, GenRet::Text(v)) => {
                format!("{{:process {p}, :type :ok, :f :get, :key \"{k}\", :value \"{v}\"}}")
            }
            Ev::Ok(p, Gen::Append(v), k, _) => {
                format!("{{:process {p}, :type :ok, :f :append, :key \"{k}\", :value \"{v}\"}}")
            }
            _ => unreachable!(),
        };
        s += &line;
        s.push('\n');
    }
    s
}

fn verdict(text: &str) -> (Format, u8) {
    let format = Format::detect(text).unwrap();
    let v = match load(text, format).unwrap() {
        Loaded::Kv(h, names) => describe(check(&h, 10_000_000), |k| names[k as usize].clone()).0,
        Loaded::Register(h) => describe(check(&h, 10_000_000), |_| String::new()).0,
    };
    (format, v)
}

/// Every format, written by our code, read back: linearizable histories
/// pass, and one read changed to a value no one wrote fails.
#[test]
fn each_format_reads_back_and_a_wrong_read_is_caught() {
    for seed in 0..20 {
        let reg = generate(seed, 60, 4, false);
        let kv = generate(seed, 60, 4, true);
        for (text, bad, format) in [
            (
                etcd_log(&reg),
                etcd_log(&corrupt(reg.clone())),
                Format::Etcd,
            ),
            (
                jepsen_edn(&reg, false),
                jepsen_edn(&corrupt(reg.clone()), false),
                Format::Jepsen,
            ),
            (
                jepsen_edn(&reg, true),
                jepsen_edn(&corrupt(reg.clone()), true),
                Format::Jepsen,
            ),
            (
                porcupine_kv_log(&kv),
                porcupine_kv_log(&corrupt(kv.clone())),
                Format::PorcupineKv,
            ),
        ] {
            assert_eq!(verdict(&text), (format, 0), "seed {seed}:\n{text}");
            assert_eq!(verdict(&bad), (format, 1), "seed {seed}:\n{bad}");
        }
    }
}

/// Malformed input is refused with the line at fault, never a panic or a
/// silent default.
#[test]
fn bad_input_names_its_line() {
    let cases = [
        ("INFO  jepsen.util - 0\t:invoke\t:write\tseven\n", "line 1", Format::Etcd),
        ("INFO  jepsen.util - 0\t:ok\t:write\t7\n", "never invoked", Format::Etcd),
        ("{:type :invoke, :f :read, :value nil, :process 0}\n{:type :invoke, :f :read, :value nil, :process 0}\n", "line 2", Format::Jepsen),
        ("{:type :invoke, :f :cas, :value 3, :process 0}\n", "[from to]", Format::Jepsen),
        ("{:type :invoke, :f :read, :value nil\n", "not EDN", Format::Jepsen),
        ("{:process 0, :type :invoke, :f :get, :key 5, :value nil}\n", "must be a string", Format::PorcupineKv),
    ];
    for (text, says, format) in cases {
        match load(text, format) {
            Err(e) => assert!(e.contains(says), "{e:?} should say {says:?}"),
            Ok(_) => panic!("accepted {text:?}"),
        }
    }
    assert!(Format::detect("hello\n").is_err());
    assert!(Format::detect("").is_err());
}
