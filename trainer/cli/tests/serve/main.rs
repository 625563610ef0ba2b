//! `slowfast serve` over loopback: every endpoint, status code and limit, on SQLite and on
//! PostgreSQL. The PostgreSQL variants are `#[ignore = "needs PostgreSQL"]`: `cargo test --
//! --ignored postgres` runs them against `SLOWFAST_TEST_PG_URL`'s server (`. scripts/postgres.sh`
//! starts one; `scripts/test-all.sh` does both) and fails when it is unset.

#[path = "../serve_harness/mod.rs"]
mod serve_harness;

mod feed;
mod lifecycle;

use reqwest::header::{AUTHORIZATION, ETAG, IF_NONE_MATCH};
use serde_json::{json, Value};
use serve_harness::*;
use slowfast_server::auth::Secret;
use slowfast_server::store::Store;

use feed::the_items_of_the_latest_exposures_are_not_served;

/// A bundle, a database and a running server for one test.
struct Setup {
    dir: tempfile::TempDir,
    db: String,
    server: Server,
}

fn setup(backend: Backend) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    let db = fresh_db(backend, dir.path());
    let server = Server::start(dir.path(), &db, dir.path());
    Setup { dir, db, server }
}

/// Runs `$body(backend)` as one test per backend; the PostgreSQL one needs a server.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { super::$name(super::Backend::Sqlite) } )* }
        mod postgres {
            $( #[test] #[ignore = "needs PostgreSQL"] fn $name() { super::$name(super::Backend::Postgres) } )*
        }
    };
}

on_both!(
    upload_is_stored_once_per_key,
    tokens_are_required_and_checked,
    an_upload_without_a_token_is_refused_before_its_body_is_read,
    a_token_acts_only_for_its_own_user,
    every_limit_gets_a_4xx_naming_the_field_and_stores_nothing,
    model_and_files_are_served_with_etags,
    feed_checks_k_and_needs_the_slow_model,
    openapi_and_health_are_public,
    shutdown_on_sigterm_is_graceful,
    a_burst_of_uploads_with_repeated_keys_stores_each_key_once,
    the_items_of_the_latest_exposures_are_not_served,
);

fn post(s: &Setup, user: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(s.server.url("/v1/upload"))
        .header(AUTHORIZATION, format!("Bearer {}", token(user)))
        .json(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn upload_is_stored_once_per_key(b: Backend) {
    let s = setup(b);
    let body = upload_body("batch-1", &["i1", "i2", "i3"], &["i4"]);
    let (status, first) = post(&s, "alice", &body);
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first,
        json!({"accepted_clicks": 3, "accepted_exposures": 1, "duplicate": false})
    );
    assert_eq!(counts(&s.db), (1, 4));
    // A retry (same key, same content, however it is spaced) returns the first answer.
    let spaced = serde_json::to_string_pretty(&body).unwrap();
    let r = client()
        .post(s.server.url("/v1/upload"))
        .header(AUTHORIZATION, format!("Bearer {}", token("alice")))
        .header("content-type", "application/json")
        .body(spaced)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"accepted_clicks": 3, "accepted_exposures": 1, "duplicate": true})
    );
    // The same key with other content is refused and stores nothing (neither its clicks nor
    // its r̂2).
    let mut other = upload_body("batch-1", &["i9"], &[]);
    other["neg_memory"] = json!(vec![0.75; DIM]);
    let (status, refused) = post(&s, "alice", &other);
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"], "idempotency_conflict");
    assert_eq!(refused["field"], "idempotency_key");
    assert!(
        refused["message"].as_str().unwrap().contains("batch-1"),
        "{refused}"
    );
    assert_eq!(counts(&s.db), (1, 4));
    // Keys are per user: bob's batch-1 is his own.
    assert_eq!(post(&s, "bob", &body).1["duplicate"], false);
    assert_eq!(counts(&s.db), (2, 8));
    // What was stored is what the trainer reads back (raw ids, per user in time order).
    let (log, neg) = block_on(async {
        let st = Store::connect(&s.db).await.unwrap();
        (
            st.event_log().await.unwrap(),
            st.neg_memories().await.unwrap(),
        )
    });
    assert_eq!(log.events.len(), 8);
    assert_eq!(log.users.len(), 2);
    let alice = log.users.get("alice").unwrap();
    let alice_items: Vec<&str> = log
        .events
        .iter()
        .filter(|e| e.user == alice)
        .map(|e| log.items.raw(e.item).unwrap())
        .collect();
    assert_eq!(alice_items, ["i1", "i4", "i2", "i3"]);
    assert_eq!(neg["alice"], ("v1".to_string(), vec![0.25; DIM]));
}

fn tokens_are_required_and_checked(b: Backend) {
    let s = setup(b);
    let body = upload_body("k", &["i1"], &[]);
    let secret = Secret::new(SECRET).unwrap();
    let expired = secret.mint("alice", 1).unwrap();
    let forged = Secret::new("another-secret-of-enough-bytes")
        .unwrap()
        .mint("alice", i64::MAX)
        .unwrap();
    let cases: [(Option<String>, &str); 5] = [
        (None, "missing"),
        (Some("Basic abc".into()), "Bearer"),
        (Some(format!("Bearer {expired}")), "expired"),
        (Some(format!("Bearer {forged}")), "signature"),
        (Some("Bearer not-a-token".into()), "malformed"),
    ];
    for path in [
        "/v1/upload",
        "/v1/feed?k=5",
        "/v1/model",
        "/v1/model/fast.onnx",
    ] {
        for (auth, says) in &cases {
            let mut r = if path == "/v1/upload" {
                client().post(s.server.url(path)).json(&body)
            } else {
                client().get(s.server.url(path))
            };
            if let Some(a) = auth {
                r = r.header(AUTHORIZATION, a);
            }
            let r = r.send().unwrap();
            assert_eq!(r.status().as_u16(), 401, "{path} {says}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            let e: Value = r.json().unwrap();
            assert_eq!(e["error"], "unauthorized");
            assert!(e["message"].as_str().unwrap().contains(says), "{path}: {e}");
        }
    }
    assert_eq!(counts(&s.db), (0, 0));
}

/// A client that announces a large upload, sends a little of it and stalls gets its 401 at
/// once: the server checks the token before it reads (and holds) a body.
fn an_upload_without_a_token_is_refused_before_its_body_is_read(b: Backend) {
    use std::io::{Read, Write};
    let s = setup(b);
    let host = s.server.base.trim_start_matches("http://").to_owned();
    for auth in ["", "Authorization: Bearer not-a-token\r\n"] {
        let mut conn = std::net::TcpStream::connect(&host).unwrap();
        let head = format!(
            "POST /v1/upload HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: 1048000\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(&[b' '; 1000]).unwrap();
        // The rest of the body never comes; a server waiting for it never answers.
        conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut answer = [0u8; 12];
        conn.read_exact(&mut answer)
            .expect("an answer before the body was sent");
        assert_eq!(&answer, b"HTTP/1.1 401", "{auth:?}");
    }
    assert_eq!(counts(&s.db), (0, 0));
}

fn a_token_acts_only_for_its_own_user(b: Backend) {
    let s = setup(b);
    let mut body = upload_body("k1", &["i1"], &[]);
    body["user"] = json!("bob");
    let (status, e) = post(&s, "alice", &body);
    assert_eq!(status, 403, "{e}");
    assert_eq!(
        (e["error"].as_str(), e["field"].as_str()),
        (Some("forbidden"), Some("user"))
    );
    assert_eq!(counts(&s.db), (0, 0));
    let feed = |user: &str| {
        client()
            .get(s.server.url(&format!("/v1/feed?k=5&user={user}")))
            .header(AUTHORIZATION, format!("Bearer {}", token("alice")))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(feed("bob"), 403);
    assert_ne!(feed("alice"), 403);
    // Naming oneself is accepted.
    body["user"] = json!("alice");
    assert_eq!(post(&s, "alice", &body).0, 200);
    assert_eq!(counts(&s.db), (1, 1));
}

fn every_limit_gets_a_4xx_naming_the_field_and_stores_nothing(b: Backend) {
    let s = setup(b);
    let good = upload_body("k", &["i1", "i2"], &["i3"]);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let many: Vec<Value> = (0..2001).map(|i| json!({"item": "i1", "ts": i})).collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            with(&|v| v["idempotency_key"] = json!("")),
            "idempotency_key",
        ),
        (
            with(&|v| v["idempotency_key"] = json!("k".repeat(129))),
            "idempotency_key",
        ),
        (with(&|v| v["model_version"] = json!("")), "model_version"),
        (
            with(&|v| v["neg_memory"] = json!(vec![0.5; DIM + 1])),
            "neg_memory",
        ),
        (with(&|v| v["neg_memory"] = json!([])), "neg_memory"),
        (with(&|v| v["neg_memory"][2] = json!(1e39)), "neg_memory[2]"),
        (with(&|v| v["neg_memory"][0] = json!("x")), "neg_memory[0]"),
        (
            with(&|v| v["clicks"][1]["item"] = json!("nope")),
            "clicks[1].item",
        ),
        (with(&|v| v["clicks"][0]["ts"] = json!(-5)), "clicks[0].ts"),
        (
            with(&|v| v["exposures"][0]["item"] = json!("")),
            "exposures[0].item",
        ),
        (with(&|v| v["clicks"] = json!(many)), "clicks"),
        (
            with(&|v| {
                v.as_object_mut()
                    .unwrap()
                    .remove("clicks")
                    .map(drop)
                    .unwrap()
            }),
            ".",
        ),
    ];
    for (body, field) in cases {
        let (status, e) = post(&s, "alice", &body);
        assert_eq!(status, 400, "{field}: {e}");
        if field == "." {
            assert!(e["message"].as_str().unwrap().contains("clicks"), "{e}");
        } else {
            assert_eq!(e["field"], field, "{e}");
        }
    }
    // Not JSON at all, and a body over the limit.
    let auth = format!("Bearer {}", token("alice"));
    let r = client()
        .post(s.server.url("/v1/upload"))
        .header(AUTHORIZATION, &auth)
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().unwrap()["error"], "invalid_json");
    let r = client()
        .post(s.server.url("/v1/upload"))
        .header(AUTHORIZATION, &auth)
        .body(vec![b' '; slowfast_core::wire::MAX_BODY_BYTES + 1])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.json::<Value>().unwrap()["error"], "body_too_large");
    assert_eq!(counts(&s.db), (0, 0));
    // The same upload, valid, is then accepted: the refusals above left no trace.
    assert_eq!(post(&s, "alice", &good).0, 200);
    assert_eq!(counts(&s.db), (1, 3));
}

fn get(s: &Setup, path: &str, etag: Option<&str>) -> reqwest::blocking::Response {
    let mut r = client()
        .get(s.server.url(path))
        .header(AUTHORIZATION, format!("Bearer {}", token("alice")));
    if let Some(t) = etag {
        r = r.header(IF_NONE_MATCH, t);
    }
    r.send().unwrap()
}

fn model_and_files_are_served_with_etags(b: Backend) {
    let s = setup(b);
    let r = get(&s, "/v1/model", None);
    assert_eq!(r.status().as_u16(), 200);
    let etag = r.headers()[ETAG].to_str().unwrap().to_string();
    let manifest: Value = r.json().unwrap();
    assert_eq!(manifest["model_version"], "v1");
    assert_eq!(get(&s, "/v1/model", Some(&etag)).status().as_u16(), 304);
    assert_eq!(
        get(&s, "/v1/model", Some("\"other\", ".to_string().as_str()))
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        get(&s, "/v1/model", Some(&format!("\"x\", W/{etag}")))
            .status()
            .as_u16(),
        304
    );

    let r = get(&s, "/v1/model/fast.onnx", None);
    assert_eq!(r.status().as_u16(), 200);
    let file_etag = r.headers()[ETAG].to_str().unwrap().to_string();
    assert_eq!(r.bytes().unwrap().as_ref(), FAST_BYTES);
    assert_eq!(
        file_etag,
        format!("\"{}\"", slowfast_core::manifest::sha256_hex(FAST_BYTES))
    );
    assert_eq!(
        get(&s, "/v1/model/fast.onnx", Some(&file_etag))
            .status()
            .as_u16(),
        304
    );
    // Not in this bundle, not a device file, not a file at all.
    for path in [
        "/v1/model/neg_step.onnx",
        "/v1/model/items.json",
        "/v1/model/..%2Fmanifest.json",
    ] {
        let r = get(&s, path, None);
        assert_eq!(r.status().as_u16(), 404, "{path}");
        assert_eq!(r.json::<Value>().unwrap()["error"], "not_found");
    }
}

fn feed_checks_k_and_needs_the_slow_model(b: Backend) {
    let s = setup(b);
    for k in ["", "?k=0", "?k=501", "?k=abc", "?k=-3", "?k=1e3"] {
        let r = get(&s, &format!("/v1/feed{k}"), None);
        assert_eq!(r.status().as_u16(), 400, "{k}");
        assert_eq!(r.json::<Value>().unwrap()["field"], "k");
    }
    // This bundle has no slow.onnx: the server says so instead of ranking with anything else.
    let r = get(&s, "/v1/feed?k=5", None);
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.json::<Value>().unwrap()["error"], "model_unavailable");
}

fn openapi_and_health_are_public(b: Backend) {
    let s = setup(b);
    let doc: Value = client()
        .get(s.server.url("/v1/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/v1/upload",
        "/v1/feed",
        "/v1/model",
        "/v1/model/{file}",
        "/healthz",
    ] {
        assert!(doc["paths"][p].is_object(), "{p}");
    }
    let health: Value = client()
        .get(s.server.url("/healthz"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        health,
        json!({"status": "ok", "model_version": "v1", "feed": false})
    );
    let r = client().get(s.server.url("/v2/anything")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<Value>().unwrap()["error"], "not_found");
    let r = client().get(s.server.url("/v1/upload")).send().unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.json::<Value>().unwrap()["error"], "method_not_allowed");
}

fn shutdown_on_sigterm_is_graceful(b: Backend) {
    let mut s = setup(b);
    assert_eq!(post(&s, "alice", &upload_body("k", &["i1"], &[])).0, 200);
    let pid = s.server.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = s.server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&s.server.log).unwrap();
    assert!(log.contains("shut down cleanly"), "{log}");
    assert_eq!(counts(&s.db), (1, 1));
    let _ = &s.dir;
}

/// 16 clients at once (the server commits what is queued together): keys repeated across
/// clients with different bodies, and invalid uploads mixed in.
fn a_burst_of_uploads_with_repeated_keys_stores_each_key_once(b: Backend) {
    let s = setup(b);
    let answers: Vec<(String, u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let s = &s;
                scope.spawn(move || {
                    (0..30)
                        .map(|i| {
                            let clicks = &["i1", "i2", "i3"];
                            let (key, body) = if (t + i) % 10 == 0 {
                                let key = format!("bad-{t}-{i}");
                                let body = upload_body(&key, &["i1", "no-such-item"], &[]);
                                (key, body)
                            } else {
                                // A key's content is the same whoever sends it: a retry.
                                let n = (t * 7 + i) % 40;
                                let key = format!("key-{n}");
                                let body = upload_body(&key, &clicks[..1 + n % 3], &["i5"]);
                                (key, body)
                            };
                            let (status, answer) = post(s, "dave", &body);
                            (key, status, answer)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut first: std::collections::HashMap<&str, &Value> = Default::default();
    let mut fresh = std::collections::HashSet::new();
    for (key, status, answer) in &answers {
        if key.starts_with("bad-") {
            assert_eq!(*status, 400, "{answer}");
            continue;
        }
        assert_eq!(*status, 200, "{answer}");
        if answer["duplicate"] == false {
            assert!(fresh.insert(key.as_str()), "{key} accepted as new twice");
        }
        let counts = |a: &Value| {
            (
                a["accepted_clicks"].clone(),
                a["accepted_exposures"].clone(),
            )
        };
        let seen = first.entry(key.as_str()).or_insert(answer);
        assert_eq!(
            counts(seen),
            counts(answer),
            "every answer for {key} is the first one"
        );
    }
    assert_eq!(
        fresh.len(),
        first.len(),
        "each key is accepted as new exactly once"
    );
    let events: u64 = first
        .values()
        .map(|a| a["accepted_clicks"].as_u64().unwrap() + a["accepted_exposures"].as_u64().unwrap())
        .sum();
    assert_eq!(counts(&s.db), (first.len() as u64, events));
}
