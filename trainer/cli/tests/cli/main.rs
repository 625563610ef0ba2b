//! The `slowfast` binary as a user runs it: synth → data stats → eval, and clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod train;

fn slowfast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slowfast"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run slowfast")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts that the command failed with `needle` in its error output.
fn assert_fails_saying(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains(needle),
        "{needle:?}: {err}"
    );
}

fn synth_small(dir: &Path) -> String {
    let data = dir.join("s.csv.gz");
    let o = slowfast(&[
        "synth",
        "--users",
        "150",
        "--items",
        "600",
        "--seed",
        "3",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    data.to_str().unwrap().to_owned()
}

/// The JSON document in the file at `path`.
fn read_json(path: impl AsRef<Path>) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `slowfast eval` of Random and Pop over 2 seeds, with `extra` arguments.
fn eval_random_pop(data: &str, out: &Path, extra: &[&str]) -> Output {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "eval",
        "--data",
        data,
        "--models",
        "Random,Pop",
        "--seeds",
        "2",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    slowfast(&args)
}

#[test]
fn synth_stats_eval_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_small(dir.path());

    let o = slowfast(&["data", "stats", "--data", &data, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stats: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(stats["filter"]["before"]["users"], 150);
    let users = stats["split"]["users"].as_u64().unwrap();
    assert!(
        users > 100,
        "most synthetic users survive the filter and split: {stats}"
    );
    assert_eq!(
        stats["split"]["test"]["clicks"].as_u64().unwrap(),
        5 * users
    );

    let out = dir.path().join("eval out");
    let o = eval_random_pop(&data, &out, &["--full-ranking-users", "40"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let results = read_json(out.join("results.json"));
    assert_eq!(results["seeds"], serde_json::json!([1, 2]));
    for model in ["Random", "Pop"] {
        for metric in [
            "HR@1",
            "HR@5",
            "HR@10",
            "NDCG@5",
            "NDCG@10",
            "MRR",
            "full HR@10",
            "full NDCG@10",
        ] {
            let v = &results["models"][model][metric];
            assert!(
                v["mean"].as_f64().is_some() && v["std"].as_f64().is_some(),
                "{model} {metric}"
            );
        }
    }
    // The best row's lead in each column comes with its bootstrap interval: Pop over Random.
    for metric in ["HR@10", "full NDCG@10"] {
        let lead = &results["differences"][metric][0];
        assert!(
            lead["a"] == "Pop" && lead["b"] == "Random",
            "{metric}: {lead}"
        );
        let (lo, diff, hi) = (
            lead["lo"].as_f64().unwrap(),
            lead["diff"].as_f64().unwrap(),
            lead["hi"].as_f64().unwrap(),
        );
        assert!(0.0 < lo && lo < diff && diff < hi, "{metric}: {lead}");
        assert_eq!(lead["significant"], true);
    }
    let full = results["protocol"]["full_ranking"].as_str().unwrap();
    assert!(
        full.contains(&format!("the 200 test cases of 40 of the {users} users")),
        "{full}"
    );
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("| Metric | Random | Pop |"));
    assert!(md.contains("| full HR@10 |"), "{md}");
    assert!(md.contains("- **significance**: "), "{md}");
    // The command it was made by reads back into the same arguments, spaces and all.
    let line = (md.lines())
        .skip_while(|l| !l.starts_with("```"))
        .nth(1)
        .unwrap();
    let words = shlex::split(line).unwrap();
    assert_eq!(words[1..3], ["eval", "--data"], "{line}");
    assert!(words.contains(&out.to_str().unwrap().to_owned()), "{line}");
    assert!(std::fs::read_to_string(out.join("results.svg"))
        .unwrap()
        .starts_with("<svg"));
}

#[test]
fn seeds_evaluated_apart_are_reused_by_the_whole_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_small(dir.path());
    let out = dir.path().join("eval");
    let eval = |extra: &[&str]| eval_random_pop(&data, &out, extra);
    let o = eval(&["--only-seed", "3"]);
    assert_fails_saying(&o, "not one of the seeds 1..=2");

    let o = eval(&["--only-seed", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("seeds/seed-2.json").exists());
    assert!(!out.join("seeds/seed-1.json").exists());
    assert!(
        !out.join("results.json").exists(),
        "one seed writes no results"
    );

    // The whole evaluation evaluates seed 1 and reuses seed 2 as saved: Random's ranks marked
    // in seed 2's file (every positive first) come back in the results.
    let saved = out.join("seeds/seed-2.json");
    let mut record = read_json(&saved);
    let random = &mut record["outcome"]["ranks"][0]["sampled"];
    *random = serde_json::json!(vec![0; random.as_array().unwrap().len()]);
    std::fs::write(&saved, record.to_string()).unwrap();
    let o = eval(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("seeds/seed-1.json").exists());
    let seed1 = read_json(out.join("seeds/seed-1.json"));
    let results = read_json(out.join("results.json"));
    let mean = results["models"]["Random"]["HR@1"]["mean"]
        .as_f64()
        .unwrap();
    let ranks = seed1["outcome"]["ranks"][0]["sampled"].as_array().unwrap();
    let hr1 = ranks.iter().filter(|r| r.as_u64() == Some(0)).count() as f64 / ranks.len() as f64;
    let expected = (hr1 + 1.0) / 2.0;
    assert!((mean - expected).abs() < 1e-12, "{mean} vs {expected}");

    // A seed file of the layout before per-case ranks is evaluated again, with a warning.
    std::fs::write(
        &saved,
        serde_json::json!({"fingerprint": "f", "seed": 2, "models": ["Random", "Pop"],
                           "rows": [[0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]], "cases": 7, "curves": []})
        .to_string(),
    )
    .unwrap();
    let o = eval(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("older layout"), "{err}");
    let again = read_json(out.join("results.json"))["models"]["Random"]["HR@1"]["mean"]
        .as_f64()
        .unwrap();
    assert!(
        again < 0.5,
        "seed 2 evaluated again, not read as 0.5: {again}"
    );
    assert!(
        read_json(&saved)["outcome"].is_object(),
        "rewritten in the new layout"
    );
}

#[test]
fn a_rerun_evaluates_only_the_named_models_again_in_saved_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_small(dir.path());
    let out = dir.path().join("eval");
    let eval = |extra: &[&str]| eval_random_pop(&data, &out, extra);
    let o = eval(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let saved = out.join("seeds/seed-2.json");
    let read = || read_json(&saved);
    let before = read();
    // Mark both models' ranks: Random's mark must survive a re-run of Pop, Pop's must not.
    let ranks = |record: &serde_json::Value, m: usize| record["outcome"]["ranks"][m].clone();
    let mut record = before.clone();
    let cases = ranks(&before, 0)["sampled"].as_array().unwrap().len();
    record["outcome"]["ranks"][0]["sampled"] = serde_json::json!(vec![0; cases]);
    record["outcome"]["ranks"][1]["sampled"] = serde_json::json!(vec![99; cases]);
    std::fs::write(&saved, record.to_string()).unwrap();

    let o = eval(&["--rerun", "FM"]);
    assert_fails_saying(&o, "not one of the evaluated models");
    assert_eq!(read(), record, "a refused re-run changes nothing");

    let o = eval(&["--rerun", "pop"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = read();
    assert_eq!(
        ranks(&after, 0),
        ranks(&record, 0),
        "Random's saved ranks are kept"
    );
    assert_eq!(
        ranks(&after, 1),
        ranks(&before, 1),
        "Pop is evaluated again"
    );
    let results = read_json(out.join("results.json"));
    let pop_hr1 = results["models"]["Pop"]["HR@1"]["mean"].as_f64().unwrap();
    assert!(pop_hr1 > 0.0, "{pop_hr1}");
}

/// `eval --protocol rerank`: the four online arms and the named rows re-rank the server's
/// feed; results.json holds every row and the feed's recall, ranks.json every case's rank.
#[test]
fn rerank_protocol_writes_the_arms_the_recall_and_every_case() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_small(dir.path());
    let out = dir.path().join("rerank");
    let rerank = |pool: &str, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--data",
            &data,
            "--protocol",
            "rerank",
            "--models",
            "Pop",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--feed-k",
            "20",
            "--pool",
            pool,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        slowfast(&args)
    };
    let o = rerank("100", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = read_json(out.join("results.json"));
    let rows: Vec<&str> = (r["models"].as_object().unwrap().keys())
        .map(String::as_str)
        .collect();
    assert_eq!(
        rows,
        [
            "slow only",
            "fast only",
            "vanilla slow+fast",
            "MC²-SF",
            "Pop"
        ]
    );
    assert_eq!(r["protocol"]["feed_k"], 20);
    let (feed, pool) = (
        r["recall"]["feed"]["mean"].as_f64().unwrap(),
        r["recall"]["pool"]["mean"].as_f64().unwrap(),
    );
    assert!(0.0 < feed && feed <= pool && pool <= 1.0, "{feed} {pool}");
    // A miss scores 0, so no HR@10 exceeds the feed's recall.
    for row in rows {
        let hr10 = r["models"][row]["HR@10"]["mean"].as_f64().unwrap();
        assert!(hr10 <= feed + 1e-12, "{row}: {hr10} > {feed}");
    }
    let ranks = read_json(out.join("ranks.json"));
    let cases = r["protocol"]["cases_per_seed"].as_u64().unwrap() as usize;
    assert_eq!(ranks[0]["ranks"]["MC²-SF"].as_array().unwrap().len(), cases);
    assert!(std::fs::read_to_string(out.join("results.md"))
        .unwrap()
        .contains("| MC²-SF | "));
    assert_fails_saying(
        &rerank("100", &["--only-seed", "1"]),
        "--protocol sampled only",
    );
    assert_fails_saying(&rerank("10", &[]), "K <= pool");
}

#[test]
fn malformed_input_names_file_and_line_and_lenient_skips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "user,item,timestamp,kind\nu1,i1,10,click\nu1,i2,notatime,click\n",
    )
    .unwrap();
    let o = slowfast(&["data", "stats", "--data", path.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.csv:3"),
        "error names file and line: {err}"
    );

    // Leniently the bad line is skipped; one user with one click is then too small to use.
    let o = slowfast(&[
        "data",
        "stats",
        "--data",
        path.to_str().unwrap(),
        "--lenient",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no user has 11 clicks"), "{err}");
}

#[test]
fn parquet_is_written_read_and_converted_like_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synth_small(dir.path());
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (plain, parquet, back) = (path("s.csv"), path("out/s.parquet"), path("back.csv"));
    for out in [&plain, &parquet] {
        let o = slowfast(&[
            "synth", "--users", "150", "--items", "600", "--seed", "3", "--out", out,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(std::fs::read(&parquet).unwrap().starts_with(b"PAR1"));
    let stats = |data: &str| {
        let o = slowfast(&["data", "stats", "--data", data, "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["dataset"].take();
        v
    };
    assert_eq!(stats(&parquet), stats(&csv));
    // Parquet back to CSV: the bytes the synthetic generator writes.
    let o = slowfast(&["data", "convert", "--data", &parquet, "--out", &back]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).starts_with(&format!("wrote {back}: 150 users, ")));
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&plain).unwrap()
    );

    // A file that is not Parquet is a clear error, lenient or not.
    let fake = path("fake.parquet");
    std::fs::write(&fake, "user,item,timestamp,kind\n").unwrap();
    for extra in [None, Some("--lenient")] {
        let mut args = vec!["data", "convert", "--data", &fake, "--out", &back];
        args.extend(extra);
        assert_fails_saying(&slowfast(&args), "fake.parquet: Parquet: ");
    }
}

#[test]
fn unknown_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_small(dir.path());
    let o = slowfast(&[
        "eval",
        "--data",
        &data,
        "--models",
        "Popular",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_fails_saying(&o, "unknown model \"Popular\"");
}

/// An FM evaluation on `data` (one seed, at most 3 epochs, patience 1) with `--max-valid`
/// and `--lr` as given, into a directory of `dir` it returns.
fn fm_eval(dir: &Path, data: &str, max_valid: &str, lr: &str) -> (Output, PathBuf) {
    let out = dir.join(format!("eval-{max_valid}-{lr}"));
    let o = slowfast(&[
        "eval",
        "--data",
        data,
        "--models",
        "FM",
        "--seeds",
        "1",
        "--epochs",
        "3",
        "--patience",
        "1",
        "--lr",
        lr,
        "--max-valid",
        max_valid,
        "--out",
        out.to_str().unwrap(),
    ]);
    (o, out)
}

/// [`fm_eval`]'s curves.
fn fm_curves(dir: &Path, data: &str, max_valid: &str, lr: &str) -> Vec<serde_json::Value> {
    let (o, out) = fm_eval(dir, data, max_valid, lr);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    read_json(out.join("curves.json"))
        .as_array()
        .unwrap()
        .clone()
}

/// The validation NDCG@10 of each epoch of a curve.
fn valid_ndcg(curve: &serde_json::Value) -> Vec<f64> {
    (curve["epochs"].as_array().unwrap().iter())
        .map(|e| e["valid_ndcg10"].as_f64().unwrap())
        .collect()
}

/// `--max-valid` sets the validation clicks early stopping looks at: with none, every epoch
/// runs and no validation score is recorded; with some, each epoch has one.
#[test]
fn max_valid_sets_the_clicks_early_stopping_looks_at() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_small(dir.path());
    let none = valid_ndcg(&fm_curves(dir.path(), &data, "0", "1e-2")[0]);
    assert_eq!(
        none,
        vec![0.0; 3],
        "no validation: every epoch runs, nothing scored"
    );
    let some = valid_ndcg(&fm_curves(dir.path(), &data, "50", "1e-2")[0]);
    assert!(
        !some.is_empty() && some.iter().all(|&v| v > 0.0),
        "{some:?}"
    );
}

/// `--lr a,b` runs every fit once per rate: one curve per rate, the first rate's run the
/// same as with `--lr a` alone, one epoch kept over both; without validation only `a` runs.
/// A rate listed twice is refused.
#[test]
fn several_learning_rates_run_each_fit_once_per_rate() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth_small(dir.path());
    let both = fm_curves(dir.path(), &data, "50", "1e-2,5e-2");
    let labels: Vec<&str> = both.iter().map(|c| c["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["FM seed 1 (lr 1e-2)", "FM seed 1 (lr 5e-2)"]);
    let alone = fm_curves(dir.path(), &data, "50", "1e-2");
    assert_eq!(valid_ndcg(&both[0]), valid_ndcg(&alone[0]));
    let kept = (both.iter())
        .flat_map(|c| c["epochs"].as_array().unwrap().clone())
        .filter(|e| e["kept"].as_bool().unwrap())
        .count();
    assert_eq!(kept, 1, "{both:?}");
    let unvalidated = fm_curves(dir.path(), &data, "0", "1e-2,5e-2");
    assert_eq!(unvalidated.len(), 1, "{unvalidated:?}");
    let (o, _) = fm_eval(dir.path(), &data, "50", "1e-2,1e-2");
    assert_fails_saying(&o, "listed twice");
}

/// `synth --slate-size N --context-slots N` shape the logging policy: a smaller slate logs fewer
/// exposures for the same clicks, and more session-topic slots than the slate holds is refused
/// by `synth` and by `demo`, which generates its world the same way.
#[test]
fn the_logging_policy_flags_shape_the_log_and_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let counts = |name: &str, policy: &[&str]| -> (u64, u64) {
        let path = dir.path().join(name);
        let mut args = vec!["synth", "--users", "60", "--items", "400"];
        args.extend_from_slice(policy);
        args.extend_from_slice(&["--out", path.to_str().unwrap()]);
        let o = slowfast(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // "wrote PATH: U users, I items, C clicks, E exposures (seed S)"
        let out = stdout(&o);
        let number_before = |what: &str| -> u64 {
            let head = &out[..out.find(what).unwrap_or_else(|| panic!("{what}: {out}"))];
            head.trim_end()
                .rsplit([' ', ','])
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        (number_before(" clicks"), number_before(" exposures"))
    };
    let default = counts("default.csv.gz", &[]);
    let narrow = counts(
        "narrow.csv.gz",
        &["--slate-size", "3", "--context-slots", "1"],
    );
    assert_eq!(default.0, narrow.0, "each user clicks until a drawn count");
    assert!(narrow.1 < default.1, "{narrow:?} vs {default:?}");

    let too_many = ["--slate-size", "3", "--context-slots", "4"];
    let o = slowfast(&[&["synth", "--out", "x.csv.gz"][..], &too_many[..]].concat());
    assert_fails_saying(&o, "context_slots");
    let out = dir.path().join("demo");
    let o = slowfast(&[&["demo", "--out", out.to_str().unwrap()][..], &too_many[..]].concat());
    assert_fails_saying(&o, "context_slots");
}
