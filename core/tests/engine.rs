//! The engine's behaviour against the fixture bundle and an in-test sync server.

mod common;

use common::{bundle_as_version, bundle_dir, feed, fixture_manifest, serve_bundle, start};
use slowfast_core::model::DeviceModel;
use slowfast_core::{Cancel, Config, SlowFast, SlowFastError};

const TOKEN: &str = "t0ken";

fn config(dir: &std::path::Path, url: &str) -> Config {
    let mut c = Config::new(dir, url, TOKEN, "u1");
    c.initial_bundle = Some(bundle_dir());
    c.http_timeout_ms = 2_000;
    c
}

fn model() -> DeviceModel {
    DeviceModel::load_dir(&bundle_dir()).unwrap()
}

fn emb(version: &str, item: &str) -> Vec<f32> {
    feed(version, &[item], fixture_manifest().dim).items[0]
        .embedding
        .clone()
}

#[test]
fn opening_installs_the_shipped_bundle_and_starts_with_zero_neg_memory() {
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), "http://127.0.0.1:9")).unwrap();
    let m = fixture_manifest();
    assert_eq!(sf.model_version(), Some(m.model_version.clone()));
    assert_eq!(sf.neg_memory(), vec![0.0; m.dim]);
}

#[test]
fn rerank_matches_the_model_orders_best_first_and_keeps_ties_in_feed_order() {
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), "http://127.0.0.1:9")).unwrap();
    let m = fixture_manifest();
    let v = &m.model_version;
    let mut f = feed(v, &["a", "b", "c", "d", "e"], m.dim);
    // Two identical candidates under different ids: equal scores, feed order kept.
    let mut twin = f.items[1].clone();
    twin.item = "b-twin".into();
    f.items.push(twin);
    sf.record_click("a", 1).unwrap();
    sf.record_exposure("c", 2).unwrap();
    let out = sf.rerank(&f).unwrap();
    assert_eq!(out.len(), 6);
    for w in out.windows(2) {
        assert!(w[0].score >= w[1].score);
    }
    let pos = |id: &str| out.iter().position(|s| s.item == id).unwrap();
    assert!(pos("b") < pos("b-twin"));
    assert_eq!(out[pos("b")].score, out[pos("b-twin")].score);
    // Same scores as the model called directly with the windows the engine keeps: the click
    // on "a" and exposure of "c" happened before their embeddings were known, so the windows
    // hold them now that the feed brought them.
    let flat = |k: &str| {
        f.items
            .iter()
            .flat_map(|i| match k {
                "e" => i.embedding.clone(),
                "t" => i.r_t.clone(),
                _ => i.r_n.clone(),
            })
            .collect::<Vec<f32>>()
    };
    let direct = model()
        .score(
            &emb(v, "a"),
            &emb(v, "c"),
            &flat("e"),
            &flat("t"),
            &flat("n"),
        )
        .unwrap();
    for (i, it) in f.items.iter().enumerate() {
        assert_eq!(out[pos(&it.item)].score, direct[i], "{}", it.item);
        assert_eq!(out[pos(&it.item)].slow_score, it.slow_score);
    }
}

#[test]
fn an_exposure_advances_neg_memory_by_one_gru_step() {
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), "http://127.0.0.1:9")).unwrap();
    let m = fixture_manifest();
    let v = &m.model_version;
    sf.rerank(&feed(v, &["x", "y"], m.dim)).unwrap();
    sf.record_exposure("x", 1).unwrap();
    let model = model();
    let one = model.neg_step(&vec![0.0; m.dim], &emb(v, "x")).unwrap();
    assert_eq!(sf.neg_memory(), one);
    sf.record_exposure("y", 2).unwrap();
    let two = model.neg_step(&one, &emb(v, "y")).unwrap();
    assert_eq!(sf.neg_memory(), two);
    // A click leaves r̂2 alone.
    sf.record_click("x", 3).unwrap();
    assert_eq!(sf.neg_memory(), two);
}

#[test]
fn an_unknown_exposure_is_folded_in_time_order_when_its_embedding_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), "http://127.0.0.1:9")).unwrap();
    let m = fixture_manifest();
    let v = &m.model_version;
    sf.rerank(&feed(v, &["known"], m.dim)).unwrap();
    sf.record_exposure("late", 1).unwrap();
    sf.record_exposure("known", 2).unwrap();
    let model = model();
    let zero = vec![0.0; m.dim];
    assert_eq!(
        sf.neg_memory(),
        model.neg_step(&zero, &emb(v, "known")).unwrap()
    );
    sf.rerank(&feed(v, &["late"], m.dim)).unwrap();
    let late_then_known = model
        .neg_step(
            &model.neg_step(&zero, &emb(v, "late")).unwrap(),
            &emb(v, "known"),
        )
        .unwrap();
    assert_eq!(sf.neg_memory(), late_then_known);
    // And the recompute is durable.
    drop(sf);
    let sf = SlowFast::open(config(dir.path(), "http://127.0.0.1:9")).unwrap();
    assert_eq!(sf.neg_memory(), late_then_known);
}

#[test]
fn events_windows_and_neg_memory_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let m = fixture_manifest();
    let v = &m.model_version;
    let f = feed(v, &["a", "b", "c"], m.dim);
    let (before, neg) = {
        let sf = SlowFast::open(config(dir.path(), "http://127.0.0.1:9")).unwrap();
        sf.rerank(&f).unwrap();
        sf.record_click("a", 1).unwrap();
        sf.record_exposure("b", 2).unwrap();
        (sf.rerank(&f).unwrap(), sf.neg_memory())
    };
    let sf = SlowFast::open(config(dir.path(), "http://127.0.0.1:9")).unwrap();
    assert_eq!(sf.neg_memory(), neg);
    assert_eq!(sf.pending_uploads().unwrap(), 2);
    assert_eq!(sf.rerank(&f).unwrap(), before);
}

#[test]
fn bad_input_is_a_typed_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), "http://127.0.0.1:9")).unwrap();
    let m = fixture_manifest();
    assert!(matches!(
        sf.record_click("", 1),
        Err(SlowFastError::InvalidArgument(_))
    ));
    assert!(matches!(
        sf.record_exposure(&"x".repeat(500), 1),
        Err(SlowFastError::InvalidArgument(_))
    ));
    let mut f = feed(&m.model_version, &["a", "b"], m.dim);
    f.items[1].r_t.pop();
    assert!(matches!(
        sf.rerank(&f),
        Err(SlowFastError::InvalidArgument(_))
    ));
    let mut f = feed(&m.model_version, &["a"], m.dim);
    f.items[0].embedding[0] = f32::NAN;
    assert!(matches!(
        sf.rerank(&f),
        Err(SlowFastError::InvalidArgument(_))
    ));
    let f = feed("other-version", &["a"], m.dim);
    assert!(matches!(
        sf.rerank(&f),
        Err(SlowFastError::VersionMismatch { .. })
    ));
    assert!(matches!(
        sf.fetch_feed(0, &Cancel::default()),
        Err(SlowFastError::InvalidArgument(_))
    ));
    assert_eq!(sf.pending_uploads().unwrap(), 0);
    // Nothing from the refused feeds was cached: an exposure of "a" is not folded.
    sf.record_exposure("a", 1).unwrap();
    assert_eq!(sf.neg_memory(), vec![0.0; m.dim]);
}

#[test]
fn a_store_of_another_user_or_a_damaged_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SlowFast::open(config(dir.path(), "http://127.0.0.1:9")).unwrap());
    let mut other = config(dir.path(), "http://127.0.0.1:9");
    other.user = "u2".into();
    assert!(matches!(
        SlowFast::open(other),
        Err(SlowFastError::InvalidArgument(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slowfast.sqlite3"), b"garbage, not sqlite").unwrap();
    assert!(matches!(
        SlowFast::open(config(dir.path(), "http://127.0.0.1:9")),
        Err(SlowFastError::StoreCorrupt(_))
    ));
}

#[test]
fn uploads_retried_after_server_errors_reuse_the_key_and_are_stored_once() {
    let server = start(TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
    for i in 0..3 {
        sf.record_click(&format!("c{i}"), i).unwrap();
        sf.record_exposure(&format!("e{i}"), i).unwrap();
    }
    // Two failures are retried inside the call.
    server.state.lock().unwrap().fail_uploads = 2;
    let r = sf.upload_pending(&Cancel::default()).unwrap();
    assert_eq!((r.uploaded_clicks, r.uploaded_exposures), (3, 3));
    assert_eq!(r.retries, 2);
    assert_eq!(r.pending, 0);
    {
        let st = server.state.lock().unwrap();
        assert_eq!(st.received.len(), 3);
        assert!(st
            .received
            .iter()
            .all(|u| u.idempotency_key == st.received[0].idempotency_key));
        assert_eq!(st.stored.len(), 1);
        assert_eq!(st.stored[0].neg_memory.len(), fixture_manifest().dim);
    }
    // The server stores a batch but the answer is lost, then the call runs out of retries:
    // the next call resends the same batch, which the server recognises as a duplicate.
    sf.record_click("late", 10).unwrap();
    {
        let mut st = server.state.lock().unwrap();
        st.lose_answers = 1;
        st.fail_uploads = 0;
    }
    let r = sf.upload_pending(&Cancel::default()).unwrap();
    assert_eq!((r.batches, r.duplicates, r.retries), (1, 1, 1));
    let st = server.state.lock().unwrap();
    assert_eq!(st.stored.len(), 2);
    assert_eq!(st.stored[1].clicks.len(), 1);
    assert_eq!(sf.pending_uploads().unwrap(), 0);
}

#[test]
fn a_rate_limited_upload_waits_for_the_servers_retry_after() {
    let server = start(TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
    sf.record_click("a", 1).unwrap();
    // A short Retry-After is waited out inside the call, longer than the jittered step.
    server.state.lock().unwrap().rate_limit = (1, 1);
    let r = sf.upload_pending(&Cancel::default()).unwrap();
    assert_eq!((r.batches, r.retries), (1, 1));
    {
        let st = server.state.lock().unwrap();
        let gap = st.received_at[1] - st.received_at[0];
        assert!(
            gap >= std::time::Duration::from_secs(1),
            "retried after {gap:?}"
        );
        assert_eq!(st.stored.len(), 1);
    }
    // A long one ends the call at once, typed, and holds threshold-driven syncs back.
    sf.record_click("b", 2).unwrap();
    server.state.lock().unwrap().rate_limit = (1, 120);
    match sf.upload_pending(&Cancel::default()) {
        Err(SlowFastError::RateLimited { retry_after_ms, .. }) => {
            assert_eq!(retry_after_ms, 120_000)
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(server.state.lock().unwrap().received.len(), 3);
    let r = sf.sync_now(&Cancel::default()).unwrap();
    assert!(r.skipped && r.backoff_ms > 110_000, "{r:?}");
    assert_eq!(
        server.state.lock().unwrap().received.len(),
        3,
        "no request sent"
    );
    assert_eq!(sf.pending_uploads().unwrap(), 1);
}

#[test]
fn a_conflicting_key_is_a_typed_error_and_the_batch_goes_again_under_a_new_key() {
    let server = start(TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
    sf.record_click("a", 1).unwrap();
    sf.record_exposure("b", 2).unwrap();
    server.state.lock().unwrap().conflicts = 1;
    assert!(matches!(
        sf.upload_pending(&Cancel::default()),
        Err(SlowFastError::Conflict { .. })
    ));
    assert_eq!(sf.pending_uploads().unwrap(), 2, "nothing acknowledged");
    let r = sf.upload_pending(&Cancel::default()).unwrap();
    assert_eq!((r.uploaded_clicks, r.uploaded_exposures), (1, 1));
    let st = server.state.lock().unwrap();
    assert_eq!(st.received.len(), 2);
    assert_ne!(
        st.received[0].idempotency_key, st.received[1].idempotency_key,
        "a new key for the same events"
    );
    assert_eq!(st.received[0].clicks, st.received[1].clicks);
    assert_eq!(st.received[0].exposures, st.received[1].exposures);
    assert_eq!(st.stored.len(), 1);
}

#[test]
fn a_batch_left_in_flight_is_resent_with_its_key_after_a_restart() {
    let server = start(TOKEN);
    let dir = tempfile::tempdir().unwrap();
    {
        let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
        sf.record_click("a", 1).unwrap();
        server.state.lock().unwrap().fail_uploads = 3;
        assert!(matches!(
            sf.upload_pending(&Cancel::default()),
            Err(SlowFastError::Server { status: 500, .. })
        ));
        assert_eq!(sf.pending_uploads().unwrap(), 1);
        sf.record_click("b", 2).unwrap();
    }
    let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
    let r = sf.upload_pending(&Cancel::default()).unwrap();
    assert_eq!(r.batches, 2, "the old batch, then one with the newer click");
    let st = server.state.lock().unwrap();
    assert_eq!(
        st.received[0].idempotency_key,
        st.received[3].idempotency_key
    );
    let clicks: Vec<&str> = st
        .stored
        .iter()
        .flat_map(|u| &u.clicks)
        .map(|c| c.item.as_str())
        .collect();
    assert_eq!(clicks, vec!["a", "b"]);
}

#[test]
fn offline_recording_catches_up_once_the_server_is_back() {
    let dir = tempfile::tempdir().unwrap();
    // Reserve a port, then close it: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c = config(dir.path(), &format!("http://{addr}"));
    c.sync_max_events = 10;
    let sf = SlowFast::open(c).unwrap();
    for i in 0..25 {
        sf.record_exposure(&format!("e{i}"), i).unwrap();
    }
    let err = sf.sync_now(&Cancel::default()).unwrap_err();
    assert!(matches!(err, SlowFastError::Network(_)), "{err}");
    assert!(
        err.to_string().contains("Connection refused"),
        "the cause: {err}"
    );
    // The failure backs off the next threshold-driven sync.
    let r = sf.sync_now(&Cancel::default()).unwrap();
    assert!(r.skipped && r.backoff_ms > 0, "{r:?}");
    assert_eq!(sf.pending_uploads().unwrap(), 25);
    let server = common::start_on(addr, TOKEN);
    let r = sf.upload_pending(&Cancel::default()).unwrap();
    assert_eq!(r.uploaded_exposures, 25);
    assert_eq!(sf.pending_uploads().unwrap(), 0);
    let st = server.state.lock().unwrap();
    let ts: Vec<i64> = st
        .stored
        .iter()
        .flat_map(|u| &u.exposures)
        .map(|e| e.ts)
        .collect();
    assert_eq!(ts, (0..25).collect::<Vec<_>>());
}

#[test]
fn sync_now_uploads_only_when_a_threshold_is_reached() {
    let server = start(TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &server.url);
    c.sync_max_events = 3;
    // Longer than any time since the epoch: before the first upload an event is due all the
    // same; after it only the count threshold can trigger.
    c.sync_interval_ms = u64::MAX;
    let sf = SlowFast::open(c).unwrap();
    sf.record_click("a", 1).unwrap();
    assert_eq!(sf.sync_now(&Cancel::default()).unwrap().batches, 1);
    sf.record_click("b", 2).unwrap();
    sf.record_click("c", 3).unwrap();
    let r = sf.sync_now(&Cancel::default()).unwrap();
    assert!(r.skipped && r.pending == 2, "{r:?}");
    sf.record_click("d", 4).unwrap();
    let r = sf.sync_now(&Cancel::default()).unwrap();
    assert_eq!((r.skipped, r.uploaded_clicks, r.pending), (false, 3, 0));
}

#[test]
fn fetch_feed_caches_embeddings_for_later_history() {
    let server = start(TOKEN);
    let m = fixture_manifest();
    server.state.lock().unwrap().feed = Some(feed(&m.model_version, &["p", "q", "r"], m.dim));
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
    let f = sf.fetch_feed(2, &Cancel::default()).unwrap();
    assert_eq!(f.items.len(), 2);
    sf.record_exposure("q", 1).unwrap();
    let step = model()
        .neg_step(&vec![0.0; m.dim], &emb(&m.model_version, "q"))
        .unwrap();
    assert_eq!(sf.neg_memory(), step);
    let mut bad = config(dir.path(), &server.url);
    bad.token = "wrong".into();
    drop(sf);
    let sf = SlowFast::open(bad).unwrap();
    match sf.fetch_feed(2, &Cancel::default()) {
        Err(e @ SlowFastError::Unauthorized { .. }) => {
            assert_eq!(e.http_status(), Some(401));
            assert!(!e.is_transient());
        }
        other => panic!("expected 401, got {other:?}"),
    }
}

#[test]
fn a_feed_is_fetched_while_a_sync_waits_on_the_server_and_a_cancelled_sync_returns_at_once() {
    let server = start(TOKEN);
    let m = fixture_manifest();
    server.state.lock().unwrap().feed = Some(feed(&m.model_version, &["p", "q"], m.dim));
    server.state.lock().unwrap().hold_uploads = true;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &server.url);
    // Longer than the test: nothing below may pass by a timeout.
    c.http_timeout_ms = 600_000;
    let sf = std::sync::Arc::new(SlowFast::open(c).unwrap());
    sf.record_click("p", 1).unwrap();
    let cancel = Cancel::new();
    let sync = {
        let (sf, cancel) = (sf.clone(), cancel.clone());
        std::thread::spawn(move || sf.upload_pending(&cancel))
    };
    while server.state.lock().unwrap().received.is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The upload is in flight and held by the server: a feed does not queue behind it.
    let f = sf.fetch_feed(2, &Cancel::default()).unwrap();
    assert_eq!(f.items.len(), 2);
    sf.record_exposure("q", 2).unwrap();
    assert!(
        !sync.is_finished(),
        "the held upload cannot have been answered"
    );
    cancel.cancel();
    assert!(matches!(
        sync.join().unwrap(),
        Err(SlowFastError::Cancelled)
    ));
    // Nothing acknowledged, nothing lost: both events still wait for upload.
    assert_eq!(sf.pending_uploads().unwrap(), 2);
    // A cancelled signal stops a later call before it starts.
    assert!(matches!(
        sf.fetch_feed(2, &cancel),
        Err(SlowFastError::Cancelled)
    ));
    server.state.lock().unwrap().hold_uploads = false;
    let report = sf.upload_pending(&Cancel::default()).unwrap();
    assert_eq!(report.pending, 0);
    assert_eq!(
        report.uploaded_clicks + report.uploaded_exposures,
        2,
        "{report:?}"
    );
}

#[test]
fn a_forbidden_feed_a_bad_url_and_a_token_for_another_user_are_typed_errors() {
    let server = start(TOKEN);
    server.state.lock().unwrap().forbid_feed = true;
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
    let e = sf.fetch_feed(2, &Cancel::default()).unwrap_err();
    assert!(
        matches!(e, SlowFastError::Forbidden { .. }) && e.http_status() == Some(403),
        "{e:?}"
    );
    drop(sf);
    for url in ["sync.example.com", "ftp://sync.example.com", "https://"] {
        let e = SlowFast::open(config(dir.path(), url)).err();
        assert!(matches!(e, Some(SlowFastError::Config(_))), "{url}: {e:?}");
    }
    // A token in the server's format names its user; one for another user is refused.
    let token_for = |user: &str| {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(format!("{user}|4102444800")),
            URL_SAFE_NO_PAD.encode(b"signature")
        )
    };
    let mut foreign = config(dir.path(), &server.url);
    foreign.token = token_for("u2");
    assert!(matches!(
        SlowFast::open(foreign),
        Err(SlowFastError::Config(_))
    ));
    let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
    assert!(matches!(
        sf.set_token(&token_for("u2")),
        Err(SlowFastError::Config(_))
    ));
    // A new token for the engine's user is sent by the calls that follow.
    sf.set_token(&token_for("u1")).unwrap();
    {
        let mut st = server.state.lock().unwrap();
        st.forbid_feed = false;
        st.token = token_for("u1");
        let m = fixture_manifest();
        st.feed = Some(feed(&m.model_version, &["p"], m.dim));
    }
    assert_eq!(sf.fetch_feed(1, &Cancel::default()).unwrap().items.len(), 1);
}

#[test]
fn a_second_engine_on_the_same_directory_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let first = SlowFast::open(config(dir.path(), "http://127.0.0.1:9")).unwrap();
    first.record_click("a", 1).unwrap();
    match SlowFast::open(config(dir.path(), "http://127.0.0.1:9")) {
        Err(SlowFastError::InUse { dir: d }) => assert_eq!(d, dir.path().display().to_string()),
        other => panic!("expected InUse, got {:?}", other.err()),
    }
    // The refused open changed nothing: the first engine goes on.
    first.record_click("b", 2).unwrap();
    drop(first);
    let second = SlowFast::open(config(dir.path(), "http://127.0.0.1:9")).unwrap();
    assert_eq!(second.pending_uploads().unwrap(), 2);
}

#[test]
fn the_last_feed_survives_a_restart_and_is_dropped_with_its_model() {
    let server = start(TOKEN);
    let m = fixture_manifest();
    server.state.lock().unwrap().feed = Some(feed(&m.model_version, &["p", "q", "r"], m.dim));
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
    assert_eq!(sf.last_feed().unwrap(), None);
    let fetched = sf.fetch_feed(3, &Cancel::default()).unwrap();
    drop(sf);
    drop(server);
    // Offline after a restart: the kept feed, priors included, re-ranks as the fetched one did.
    let sf = SlowFast::open(config(dir.path(), "http://127.0.0.1:9")).unwrap();
    let kept = sf.last_feed().unwrap().expect("the last feed is kept");
    assert_eq!(kept, fetched);
    assert_eq!(sf.rerank(&kept).unwrap().len(), 3);
    let other = bundle_as_version(&dir.path().join("v2"), "v2");
    assert!(sf.install_bundle(&other).unwrap());
    assert!(
        !sf.install_bundle(&other).unwrap(),
        "the same version again"
    );
    assert_eq!(
        sf.last_feed().unwrap(),
        None,
        "a feed is for the model that made it"
    );
}

#[test]
fn a_model_swap_mid_session_recomputes_neg_memory_from_the_exposure_log() {
    let server = start(TOKEN);
    let tmp = tempfile::tempdir().unwrap();
    let v2 = bundle_as_version(&tmp.path().join("v2"), "v2");
    let m = fixture_manifest();
    let v1 = m.model_version.clone();
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
    sf.rerank(&feed(&v1, &["a", "b"], m.dim)).unwrap();
    sf.record_exposure("a", 1).unwrap();
    sf.record_exposure("b", 2).unwrap();
    assert_ne!(sf.neg_memory(), vec![0.0; m.dim]);
    // No bundle on the server yet.
    assert!(matches!(
        sf.update_model(&Cancel::default()),
        Err(SlowFastError::Server { status: 404, .. })
    ));
    server.state.lock().unwrap().bundle = Some(serve_bundle(&v2));
    assert!(sf.update_model(&Cancel::default()).unwrap());
    assert_eq!(sf.model_version().as_deref(), Some("v2"));
    // The old embeddings are gone with the old model; r̂2 waits for the new ones.
    assert_eq!(sf.neg_memory(), vec![0.0; m.dim]);
    assert!(matches!(
        sf.rerank(&feed(&v1, &["a"], m.dim)),
        Err(SlowFastError::VersionMismatch { .. })
    ));
    // v2's feed brings the embeddings back (in another order): a, b are folded in the
    // exposures' time order.
    let f2 = feed("v2", &["b", "a"], m.dim);
    sf.rerank(&f2).unwrap();
    let model = model();
    let expect = model
        .neg_step(
            &model
                .neg_step(&vec![0.0; m.dim], &f2.items[1].embedding)
                .unwrap(),
            &f2.items[0].embedding,
        )
        .unwrap();
    assert_eq!(sf.neg_memory(), expect);
    // The same bundle again: 304, nothing changes.
    assert!(!sf.update_model(&Cancel::default()).unwrap());
    // The swap is durable.
    drop(sf);
    let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
    assert_eq!(sf.model_version().as_deref(), Some("v2"));
    assert_eq!(sf.neg_memory(), expect);
}

#[test]
fn a_corrupt_bundle_is_refused_and_the_old_one_kept() {
    let server = start(TOKEN);
    let tmp = tempfile::tempdir().unwrap();
    let v2 = bundle_as_version(&tmp.path().join("v2"), "v2");
    let (manifest, mut files) = serve_bundle(&v2);
    if let Some(f) = files.get_mut("fast.onnx") {
        let mid = f.len() / 2;
        f[mid] ^= 0x40;
    }
    server.state.lock().unwrap().bundle = Some((manifest, files.clone()));
    let m = fixture_manifest();
    let dir = tempfile::tempdir().unwrap();
    let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
    let f = feed(&m.model_version, &["a", "b"], m.dim);
    let before = sf.rerank(&f).unwrap();
    match sf.update_model(&Cancel::default()) {
        Err(SlowFastError::Bundle { file, .. }) => assert_eq!(file, "fast.onnx"),
        other => panic!("expected a refused bundle, got {other:?}"),
    }
    assert_eq!(sf.model_version(), Some(m.model_version.clone()));
    assert_eq!(sf.rerank(&f).unwrap(), before);
    // The same from a directory.
    std::fs::write(v2.join("fast.onnx"), &files["fast.onnx"]).unwrap();
    assert!(matches!(
        sf.install_bundle(&v2),
        Err(SlowFastError::Bundle { .. })
    ));
    assert_eq!(sf.model_version(), Some(m.model_version.clone()));
    drop(sf);
    let sf = SlowFast::open(config(dir.path(), &server.url)).unwrap();
    assert_eq!(sf.model_version(), Some(m.model_version));
}

#[test]
fn without_a_bundle_events_are_recorded_and_scoring_waits_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), "http://127.0.0.1:9");
    c.initial_bundle = None;
    let sf = SlowFast::open(c).unwrap();
    sf.record_exposure("a", 1).unwrap();
    assert_eq!(sf.model_version(), None);
    assert!(sf.neg_memory().is_empty());
    let m = fixture_manifest();
    assert!(matches!(
        sf.rerank(&feed(&m.model_version, &["a"], m.dim)),
        Err(SlowFastError::NoModel)
    ));
    assert!(sf.sync_now(&Cancel::default()).unwrap().skipped);
    assert!(sf.install_bundle(&bundle_dir()).unwrap());
    sf.rerank(&feed(&m.model_version, &["a"], m.dim)).unwrap();
    // The exposure recorded before the model is folded once its embedding arrives.
    let step = model()
        .neg_step(&vec![0.0; m.dim], &emb(&m.model_version, "a"))
        .unwrap();
    assert_eq!(sf.neg_memory(), step);
}

#[test]
fn the_engine_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SlowFast>();
}
