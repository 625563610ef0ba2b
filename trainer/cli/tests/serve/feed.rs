//! The feed: the pool ranked by the slow model, and the seen filter.

use super::*;

/// The exporter's fixture bundle (a real `slow.onnx`, 100 items, d = 32).
fn fixture_bundle() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../core/tests/data/bundle")
}

/// The fixture bundle's manifest.
fn fixture_manifest() -> Value {
    serde_json::from_slice(&std::fs::read(fixture_bundle().join("manifest.json")).unwrap()).unwrap()
}

/// Uploads `body` as `auth`; the server must accept it.
fn upload_ok(server: &Server, auth: &str, body: &Value) {
    let r = client()
        .post(server.url("/v1/upload"))
        .header(AUTHORIZATION, auth)
        .json(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
}

/// `GET /v1/feed?k=K` as `auth`.
fn feed_of(server: &Server, auth: &str, k: usize) -> Value {
    client()
        .get(server.url(&format!("/v1/feed?k={k}")))
        .header(AUTHORIZATION, auth)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn feed_ranks_the_pool_with_the_slow_model() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fixture_bundle();
    let db = dir.path().join("sync.db").display().to_string();
    let server = Server::start(&bundle, &db, dir.path());
    let manifest = fixture_manifest();
    let table: slowfast_core::manifest::ItemTable =
        serde_json::from_slice(&std::fs::read(bundle.join("items.json")).unwrap()).unwrap();
    let d = manifest["dim"].as_u64().unwrap() as usize;
    let auth = format!("Bearer {}", token("dora"));
    let mut body = upload_body("h1", &[&table.ids[3], &table.ids[5], &table.ids[8]], &[]);
    body["neg_memory"] = json!(vec![0.1f32; d]);
    body["model_version"] = manifest["model_version"].clone();
    upload_ok(&server, &auth, &body);
    let feed = feed_of(&server, &auth, 10);
    assert_eq!(feed["model_version"], manifest["model_version"]);
    let items = feed["items"].as_array().unwrap();
    assert_eq!(items.len(), 10, "{feed}");
    let scores: Vec<f64> = items
        .iter()
        .map(|i| i["slow_score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    for it in items {
        let id = it["item"].as_str().unwrap();
        assert!(![&table.ids[3], &table.ids[5], &table.ids[8]].contains(&&id.to_string()));
        let idx = table.ids.iter().position(|x| x == id).unwrap();
        let e: Vec<f32> = serde_json::from_value(it["embedding"].clone()).unwrap();
        assert_eq!(e, table.embeddings[idx * d..(idx + 1) * d]);
        for key in ["r_t", "r_n"] {
            let v: Vec<f32> = serde_json::from_value(it[key].clone()).unwrap();
            assert_eq!(v.len(), d);
            assert!(v.iter().all(|x| x.is_finite()));
        }
    }
    // The whole catalogue is smaller than a large k: every unclicked item, once.
    let all = feed_of(&server, &auth, 500);
    assert_eq!(all["items"].as_array().unwrap().len(), table.ids.len() - 3);
}

/// The seen filter (`--seen N`): the items of the user's latest N uploaded exposures are not
/// served; an older exposure's item is served again.
pub(super) fn the_items_of_the_latest_exposures_are_not_served(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fixture_bundle();
    let db = fresh_db(b, dir.path());
    let server = Server::start_with(&bundle, &db, dir.path(), &["--seen", "2"]);
    let manifest = fixture_manifest();
    let auth = format!("Bearer {}", token("erin"));
    let feed = || -> Vec<String> {
        let feed = feed_of(&server, &auth, 500);
        (feed["items"].as_array().unwrap().iter())
            .map(|i| i["item"].as_str().unwrap().to_owned())
            .collect()
    };
    let before = feed();
    let shown = [&before[0], &before[1], &before[2]].map(String::as_str);
    // Shown in this order (ascending timestamps), none clicked.
    let mut body = upload_body("s1", &[], &shown);
    body["model_version"] = manifest["model_version"].clone();
    body["neg_memory"] = json!(vec![0.0f32; manifest["dim"].as_u64().unwrap() as usize]);
    upload_ok(&server, &auth, &body);
    let after = feed();
    assert_eq!(after.len(), before.len() - 2, "{after:?}");
    assert!(
        after.iter().any(|i| i == shown[0]),
        "older than the window: served"
    );
    for recent in &shown[1..] {
        assert!(
            !after.contains(&recent.to_string()),
            "{recent} was just shown"
        );
    }
}
