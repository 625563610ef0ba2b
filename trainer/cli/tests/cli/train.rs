//! `slowfast train --from-db`: the next round from what devices uploaded to a sync server.

use super::*;

#[test]
fn train_from_db_continues_a_checkpoint_on_what_devices_uploaded() {
    use slowfast_core::wire::{UploadRequest, WireEvent};
    use slowfast_data::{read, EventKind, Format, ReadOptions};
    use slowfast_server::store::Store;

    let dir = tempfile::tempdir().unwrap();
    let data = synth_small(dir.path());
    let ckpt = dir.path().join("ckpt");
    let ckpt = ckpt.to_str().unwrap();
    let o = slowfast(&[
        "train", "--data", &data, "--out", ckpt, "--rounds", "1", "--epochs", "1", "--lr", "1e-2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Twenty users' logs, uploaded as their phones would, plus one item the model never saw.
    let log = read(Path::new(&data), Format::Csv, ReadOptions::default()).unwrap();
    let db = dir.path().join("sync.db").display().to_string();
    let empty = dir.path().join("empty.db").display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        Store::connect(&empty).await.unwrap().close().await;
        let store = Store::connect(&db).await.unwrap();
        for u in 0..20u32 {
            let mut req = UploadRequest {
                user: None,
                idempotency_key: format!("k{u}"),
                model_version: "v0".into(),
                neg_memory: vec![0.0; 32],
                clicks: vec![WireEvent {
                    item: "never-seen".into(),
                    ts: 0,
                }],
                exposures: Vec::new(),
            };
            for e in log.events.iter().filter(|e| e.user == u) {
                let w = WireEvent {
                    item: log.items.raw(e.item).unwrap().to_owned(),
                    ts: e.ts * 1000,
                };
                match e.kind {
                    EventKind::Click => req.clicks.push(w),
                    EventKind::Exposure => req.exposures.push(w),
                }
            }
            let user = log.users.raw(u).unwrap();
            store.record_upload(user, &req, 0).await.unwrap();
        }
        store.close().await;
    });

    let next = dir.path().join("next");
    let o = slowfast(&[
        "train",
        "--from-db",
        &db,
        "--checkpoint",
        ckpt,
        "--out",
        next.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    // The 20 never-seen clicks, and any item the 20-core filter dropped before training.
    let unknown: usize = out
        .split(" on unknown items left out")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(unknown >= 20, "{out}");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(next.join("checkpoint.json")).unwrap()).unwrap();
    assert_eq!(saved["round"], 2, "one more round of Algorithm 1");
    assert_eq!(saved["dataset"], db.as_str());
    // The weights change exactly when a fit of round 2 kept one of its epochs, and the
    // output says which it was.
    use slowfast_trainer::checkpoint::{model_version, Checkpoint};
    let version = |dir: &Path| model_version(&Checkpoint::load(dir).unwrap().model).unwrap();
    let (before, after) = (version(Path::new(ckpt)), version(&next));
    let fits = saved["log"]["fits"].as_array().unwrap();
    let round_2_kept = (fits.iter())
        .filter(|f| f[0].as_str().unwrap().ends_with("round 2"))
        .flat_map(|f| f[1].as_array().unwrap())
        .any(|e| e["kept"] == true);
    assert_eq!(before != after, round_2_kept, "{fits:?}");
    let said = if before == after {
        format!("model version {before} unchanged")
    } else {
        format!("model version {before} → {after}")
    };
    assert!(out.contains(&said), "{out}");

    let o = slowfast(&[
        "train",
        "--from-db",
        &empty,
        "--checkpoint",
        ckpt,
        "--out",
        next.to_str().unwrap(),
    ]);
    assert_fails_saying(&o, "clicks");
    let o = slowfast(&["train", "--from-db", &db, "--out", next.to_str().unwrap()]);
    assert!(!o.status.success(), "--from-db needs --checkpoint");
}
