//! Campaigns split into shards (one per process or machine: a Slurm array
//! task, a Kubernetes Indexed Job pod) and merged back: the merge prints the
//! summary of one campaign of the same seeds, apart from wall time: runs,
//! events, faults by kind, coverage marks, checked histories, and every
//! failure with its replay commands and a repro file that replays it.

use paxsim::campaign::{self, Options, Shard, Summary};
use paxsim::results::{self, CampaignResult, ResultFile};
use paxsim::RunConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("paxsim-shards-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn options(config: &RunConfig, seeds: u64, shard: Option<Shard>, repros: &Path) -> Options {
    Options {
        config: config.clone(),
        start: 0,
        seeds,
        shard,
        jobs: 2,
        check_determinism: false,
        repro_dir: Some(repros.to_path_buf()),
        max_failures: 0,
        progress: false,
    }
}

/// The summary without its one machine-dependent line.
fn without_wall(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("wall ")).collect();
    assert!(
        lines.len() + 1 == text.lines().count(),
        "one wall line: {text}"
    );
    lines.join("\n")
}

/// Runs shard `i` of `n` and writes its result file as `campaign --json`
/// does; returns the file read back.
fn shard_file(config: &RunConfig, seeds: u64, i: u64, n: u64, dir: &Path) -> (PathBuf, ResultFile) {
    let shard = Shard::new(i, n).unwrap();
    let opts = options(config, seeds, Some(shard), &dir.join(format!("repros-{i}")));
    let summary = campaign::run(&opts);
    assert_eq!(summary.runs, opts.range().count() as u64);
    let file = ResultFile::new(
        Some((shard, "--shard")),
        vec![CampaignResult::new(&opts, &summary)],
    );
    let path = dir.join(format!("shard-{i}.json"));
    file.save(&path).unwrap();
    (path.clone(), ResultFile::load(&path).unwrap())
}

/// Runs the campaign whole and in `n` shards, merges the shards, and
/// requires the same summary; returns the whole campaign's.
fn merged_equals_whole(config: &RunConfig, seeds: u64, n: u64, name: &str) -> Summary {
    let dir = tmp(name);
    let repros = dir.join("repros");
    let whole = campaign::run(&options(config, seeds, None, &repros));
    let saved: BTreeMap<u64, String> = whole
        .failures
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f.repro.as_ref().unwrap()).unwrap();
            (f.seed, text)
        })
        .collect();
    let files: Vec<_> = (0..n)
        .map(|i| shard_file(config, seeds, i, n, &dir))
        .collect();
    let m = results::merge(&files, &repros).unwrap();
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert_eq!(m.campaigns.len(), 1);
    let merged = &m.campaigns[0];
    assert!(merged.missing.is_empty() && !merged.stopped_early);
    assert_eq!(merged.files.len() as u64, n);
    assert_eq!(
        without_wall(&merged.summary.render(config)),
        without_wall(&whole.render(config)),
        "the merged shards must summarise as the whole campaign"
    );
    // The merge wrote each failure's repro file where the whole campaign
    // did, byte for byte, so the replay commands it printed work.
    for f in &merged.summary.failures {
        let text = std::fs::read_to_string(f.repro.as_ref().unwrap()).unwrap();
        assert_eq!(
            Some(&text),
            saved.get(&f.seed),
            "repro file of seed {}",
            f.seed
        );
    }
    assert!(merged.summary.render(config).contains("summed over"));
    let _ = std::fs::remove_dir_all(&dir);
    whole
}

#[test]
fn four_shards_of_a_failing_basic_campaign_merge_into_the_whole_summary() {
    let mut cfg = RunConfig::for_scenario("basic");
    cfg.enable_bug("volatile-round").unwrap();
    let whole = merged_equals_whole(&cfg, 600, 4, "basic");
    assert!(
        whole.failures.len() >= 2,
        "the canary fails in several seeds, in more than one shard: {}",
        whole.render(&cfg)
    );
}

#[test]
fn four_shards_of_a_kv_campaign_merge_into_the_whole_summary() {
    let cfg = RunConfig::for_scenario("kv");
    let whole = merged_equals_whole(&cfg, 60, 4, "kv");
    let text = whole.render(&cfg);
    assert!(whole.failures.is_empty(), "{text}");
    assert!(
        text.contains("histories checked linearizable: 60 of 60"),
        "{text}"
    );
    assert!(whole.coverage.iter().any(|(_, n)| *n > 0), "{text}");
}

#[test]
fn shards_split_the_seeds_into_contiguous_blocks_that_cover_each_seed_once() {
    for (start, seeds) in [(0, 0), (0, 1), (5, 7), (100, 10_000), (u64::MAX - 10, 10)] {
        for n in [1, 2, 3, 4, 7, 16] {
            let ranges: Vec<_> = (0..n)
                .map(|i| Shard::new(i, n).unwrap().seeds(start, seeds))
                .collect();
            assert_eq!(ranges[0].start, start);
            assert_eq!(ranges[n as usize - 1].end, start + seeds);
            for w in ranges.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            let sizes: Vec<u64> = ranges.iter().map(|r| r.end - r.start).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "{start}+{seeds} in {n}: {sizes:?}");
        }
    }
}

#[test]
fn a_shard_is_named_by_the_flag_or_by_slurm_or_kubernetes() {
    let env = |vars: &[(&str, &str)]| {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Shard::from_env(move |k| vars.get(k).cloned())
    };
    assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
    for bad in ["4/4", "1", "a/2", "1/0", "-1/3", "1/2/3"] {
        assert!(Shard::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(env(&[]), Ok(None));
    // A Slurm array numbered 1..4 (--array=1-4).
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "3"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
    ];
    assert_eq!(
        env(&slurm),
        Ok(Some((Shard { index: 2, count: 4 }, "SLURM_ARRAY_TASK_ID")))
    );
    let stepped = [
        ("SLURM_ARRAY_TASK_ID", "2"),
        ("SLURM_ARRAY_TASK_COUNT", "2"),
        ("SLURM_ARRAY_TASK_STEP", "2"),
    ];
    assert!(env(&stepped).unwrap_err().contains("step"));
    let no_count = [("SLURM_ARRAY_TASK_ID", "0")];
    assert!(env(&no_count)
        .unwrap_err()
        .contains("SLURM_ARRAY_TASK_COUNT"));
    let k8s = [("JOB_COMPLETION_INDEX", "7"), ("PAXSIM_SHARD_COUNT", "8")];
    assert_eq!(
        env(&k8s),
        Ok(Some((Shard { index: 7, count: 8 }, "JOB_COMPLETION_INDEX")))
    );
    let k8s_no_count = [("JOB_COMPLETION_INDEX", "7")];
    assert!(env(&k8s_no_count)
        .unwrap_err()
        .contains("PAXSIM_SHARD_COUNT"));
    let k8s_outside = [("JOB_COMPLETION_INDEX", "8"), ("PAXSIM_SHARD_COUNT", "8")];
    assert!(env(&k8s_outside).is_err());
    let garbage = [
        ("JOB_COMPLETION_INDEX", "seven"),
        ("PAXSIM_SHARD_COUNT", "8"),
    ];
    assert!(env(&garbage).unwrap_err().contains("not a whole number"));
}

#[test]
fn merging_refuses_overlapping_shards_and_reports_missing_seeds_and_mixed_builds() {
    let dir = tmp("mixed");
    let cfg = RunConfig::for_scenario("basic");
    let files: Vec<_> = (0..3).map(|i| shard_file(&cfg, 30, i, 3, &dir)).collect();
    let repros = dir.join("repros");
    // The same shard twice would count its runs twice.
    let twice = vec![files[0].clone(), files[1].clone(), files[1].clone()];
    let e = results::merge(&twice, &repros).unwrap_err();
    assert!(e.contains("are in both"), "{e}");
    // A lost shard leaves its seeds uncovered.
    let m = results::merge(&[files[0].clone(), files[2].clone()], &repros).unwrap();
    assert_eq!(m.campaigns[0].missing, vec![10..20]);
    // Shards of another build are merged, with a warning.
    let mut other = files[2].clone();
    other.1.git_revision = "0000000".into();
    let m = results::merge(&[files[0].clone(), files[1].clone(), other], &repros).unwrap();
    assert!(m.campaigns[0].missing.is_empty());
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("different paxsim builds")),
        "{:?}",
        m.warnings
    );
    // Shards of another config are another campaign: summarised apart, with
    // a warning.
    let mut calm = cfg.clone();
    calm.faults = Some(paxsim::Faults::NONE);
    std::fs::create_dir_all(dir.join("calm")).unwrap();
    let odd = shard_file(&calm, 30, 2, 3, &dir.join("calm"));
    let m = results::merge(&[files[0].clone(), files[1].clone(), odd], &repros).unwrap();
    assert_eq!(m.campaigns.len(), 2);
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("two different campaigns")),
        "{:?}",
        m.warnings
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_result_file_gets_a_clear_error() {
    for (text, says) in [
        ("{", "not a campaign results file"),
        ("{\"paxsim_campaign\": 99}", "version 99 is not supported"),
        (
            "{\"paxsim_campaign\": 1}",
            "not a valid campaign results file",
        ),
        ("[]", "no paxsim_campaign version"),
    ] {
        let e = ResultFile::parse(text).unwrap_err();
        assert!(e.contains(says), "{text}: {e}");
    }
    // A shard whose seeds lie outside its campaign's.
    let dir = tmp("bad");
    let cfg = RunConfig::for_scenario("basic");
    let (_, mut f) = shard_file(&cfg, 8, 0, 2, &dir);
    f.campaigns[0].ran.end = 20;
    let text = serde_json::to_string(&f).unwrap();
    let e = ResultFile::parse(&text).unwrap_err();
    assert!(e.contains("outside the campaign"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
