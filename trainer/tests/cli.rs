//! The `slowfast` binary as a user runs it: synth → data stats → eval, and clear errors.

use std::path::Path;
use std::process::{Command, Output};

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

    let out = dir.path().join("eval");
    let o = slowfast(&[
        "eval",
        "--data",
        &data,
        "--models",
        "Random,Pop",
        "--seeds",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["seeds"], serde_json::json!([1, 2]));
    for model in ["Random", "Pop"] {
        for metric in ["HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR"] {
            let v = &results["models"][model][metric];
            assert!(
                v["mean"].as_f64().is_some() && v["std"].as_f64().is_some(),
                "{model} {metric}"
            );
        }
    }
    assert!(std::fs::read_to_string(out.join("results.md"))
        .unwrap()
        .contains("| Metric | Random | Pop |"));
    assert!(std::fs::read_to_string(out.join("results.svg"))
        .unwrap()
        .starts_with("<svg"));
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
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown model \"Popular\""));
}
