//! `slowfast serve` over loopback: every endpoint, status code and limit, on SQLite and on
//! PostgreSQL. The PostgreSQL variants are `#[ignore = "needs PostgreSQL"]`: `cargo test --
//! --ignored postgres` runs them against `SLOWFAST_TEST_PG_URL`'s server (`. scripts/postgres.sh`
//! starts one; `scripts/test-all.sh` does both) and fails when it is unset.

mod serve_harness;

use reqwest::header::{AUTHORIZATION, ETAG, IF_NONE_MATCH};
use serde_json::{json, Value};
use serve_harness::*;
use slowfast_trainer::serve::auth::Secret;
use slowfast_trainer::serve::store::Store;

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

/// Reads from `conn` until the server closes it (`Ok(bytes read)`), or `Err` when nothing
/// more came for `wait`.
fn read_to_close(
    conn: &mut std::net::TcpStream,
    wait: std::time::Duration,
) -> Result<usize, String> {
    use std::io::Read;
    conn.set_read_timeout(Some(wait)).unwrap();
    let (mut buf, mut total) = ([0u8; 4096], 0);
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(total),
            Err(e) => return Err(format!("still open after {wait:?} ({e})")),
        }
    }
}

/// A client cannot hold the server: an idle connection, one that never finishes its headers
/// and an upload whose body stalls are each closed after their timeout, and past
/// `--max-connections` a new client waits for a place instead of exhausting the server.
#[test]
fn idle_stalled_and_excess_connections_are_closed() {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    let db = fresh_db(Backend::Sqlite, dir.path());
    let flags = ["--header-timeout", "1", "--body-timeout", "1"];
    let server = Server::start_with(dir.path(), &db, dir.path(), &flags);
    let host = server.base.trim_start_matches("http://").to_owned();
    let generous = Duration::from_secs(20);

    let mut idle = TcpStream::connect(&host).unwrap();
    read_to_close(&mut idle, generous).expect("an idle connection is closed");

    let mut half = TcpStream::connect(&host).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    read_to_close(&mut half, generous).expect("unfinished headers are cut off");

    let mut stalled = TcpStream::connect(&host).unwrap();
    let head = format!(
        "POST /v1/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{\"idempotency_key\"",
        token("alice")
    );
    stalled.write_all(head.as_bytes()).unwrap();
    read_to_close(&mut stalled, generous).expect("a stalled body is cut off");
    assert_eq!(counts(&db), (0, 0));
    drop(server);

    // Two places, both taken by idle clients: a third client's request is answered only once
    // an idle one has been closed, 3 s after it connected.
    let flags = ["--header-timeout", "3", "--max-connections", "2"];
    let server = Server::start_with(dir.path(), &db, dir.path(), &flags);
    let host = server.base.trim_start_matches("http://").to_owned();
    let _idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&host).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(&host).unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(
        read_to_close(&mut third, Duration::from_millis(1000)).is_err(),
        "a third connection was served while two places were taken"
    );
    let answered = read_to_close(&mut third, generous).expect("served once a place is free");
    assert!(answered > 0, "the request got an answer");
}

/// 8 clients upload (each its own keys, 2 clicks and 1 exposure each) until `stop` has
/// stopped the server after 300 acknowledgements; returns the acknowledged keys and the
/// events stored per key. The server's log is returned too.
fn stop_under_load(
    stop: impl FnOnce(&mut std::process::Child),
) -> (Vec<String>, std::collections::HashMap<String, i64>, String) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    let db = fresh_db(Backend::Sqlite, dir.path());
    let mut server = Server::start(dir.path(), &db, dir.path());
    let url = server.url("/v1/upload");
    let acked = Mutex::new(Vec::new());
    let running = AtomicUsize::new(8);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (url, acked, running) = (&url, &acked, &running);
            scope.spawn(move || {
                for i in 0.. {
                    let key = format!("{t}-{i}");
                    let sent = client()
                        .post(url)
                        .header(AUTHORIZATION, format!("Bearer {}", token("erin")))
                        .json(&upload_body(&key, &["i1", "i2"], &["i3"]))
                        .send();
                    match sent {
                        Ok(r) if r.status().as_u16() == 200 => acked.lock().unwrap().push(key),
                        _ => break,
                    }
                }
                running.fetch_sub(1, Ordering::SeqCst);
            });
        }
        while acked.lock().unwrap().len() < 300 && running.load(Ordering::SeqCst) == 8 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        stop(&mut server.child);
    });
    let acked = acked.into_inner().unwrap();
    assert!(
        acked.len() >= 300,
        "the clients stopped early: {}",
        acked.len()
    );
    let stored: std::collections::HashMap<String, i64> = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{db}"))
            .await
            .unwrap();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT u.idempotency_key, COUNT(e.seq) FROM uploads u \
             LEFT JOIN events e USING (user_id, idempotency_key) GROUP BY u.idempotency_key",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.into_iter().collect()
    });
    for key in &acked {
        assert_eq!(
            stored.get(key),
            Some(&3),
            "acknowledged upload {key} is not whole"
        );
    }
    assert!(
        stored.values().all(|&n| n == 3),
        "an upload was stored in part"
    );
    let log = std::fs::read_to_string(&server.log).unwrap();
    (acked, stored, log)
}

/// An upload is answered only after its commit: kill -9 the server under load, and every
/// acknowledged upload is in the database with all its events.
#[test]
fn an_acknowledged_upload_survives_a_killed_server() {
    stop_under_load(|child| {
        child.kill().unwrap();
        child.wait().unwrap();
    });
}

/// SIGTERM under load: the server stops accepting, answers every request it accepted (the
/// upload queue drains) and exits 0; every acknowledged upload is stored whole, and every
/// upload stored was answered (nothing accepted is dropped unanswered).
#[test]
fn a_graceful_stop_under_load_answers_every_accepted_upload() {
    let (acked, stored, log) = stop_under_load(|child| {
        let pid = child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    });
    assert!(log.contains("shut down cleanly"), "{log}");
    let acked: std::collections::HashSet<&String> = acked.iter().collect();
    let unanswered: Vec<&String> = stored.keys().filter(|k| !acked.contains(k)).collect();
    assert!(
        unanswered.is_empty(),
        "stored but not acknowledged on a graceful stop: {unanswered:?}"
    );
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn metrics_count_requests_by_route_template_and_status() {
    let s = setup(Backend::Sqlite);
    assert_eq!(
        post(&s, "alice", &upload_body("k1", &["i1"], &["i2"])).0,
        200
    );
    assert_eq!(post(&s, "alice", &upload_body("k2", &["i1"], &[])).0, 200);
    assert_eq!(post(&s, "alice", &upload_body("k3", &["nope"], &[])).0, 400);
    assert_eq!(get(&s, "/v1/model/fast.onnx", None).status().as_u16(), 200);
    assert_eq!(get(&s, "/v1/model/other-123", None).status().as_u16(), 404);
    assert_eq!(get(&s, "/no/such/path", None).status().as_u16(), 404);
    let r = client().get(s.server.url("/metrics")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().unwrap();
    let count = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}\n{text}"));
    let requests = |method: &str, route: &str, status: u16| {
        count(&format!(
            "slowfast_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
        ))
    };
    assert_eq!(requests("POST", "/v1/upload", 200), 2.0);
    assert_eq!(requests("POST", "/v1/upload", 400), 1.0);
    // Paths are labelled by their route's template, unknown ones as `unmatched`.
    assert_eq!(requests("GET", "/v1/model/{file}", 200), 1.0);
    assert_eq!(requests("GET", "/v1/model/{file}", 404), 1.0);
    assert_eq!(requests("GET", "unmatched", 404), 1.0);
    assert!(!text.contains("other-123") && !text.contains("/no/such/path"));
    assert_eq!(
        count("slowfast_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/upload\",status=\"200\"}"),
        2.0
    );
    assert_eq!(count("slowfast_upload_group_uploads_sum"), 2.0);
    assert_eq!(count("slowfast_upload_group_events_sum"), 3.0);
    assert_eq!(count("slowfast_upload_queue_depth"), 0.0);
    assert_eq!(count("slowfast_model_info{model_version=\"v1\"}"), 1.0);
    assert_eq!(count("slowfast_model_items"), ITEMS as f64);
    assert_eq!(count("slowfast_rate_limited_total"), 0.0);
}

#[test]
fn a_token_past_its_rate_limit_gets_429_with_retry_after_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    let db = fresh_db(Backend::Sqlite, dir.path());
    let server = Server::start_with(
        dir.path(),
        &db,
        dir.path(),
        &["--rate-limit", "0.5", "--rate-burst", "2"],
    );
    let send = |user: &str, key: &str| {
        client()
            .post(server.url("/v1/upload"))
            .header(AUTHORIZATION, format!("Bearer {}", token(user)))
            .json(&upload_body(key, &["i1"], &[]))
            .send()
            .unwrap()
    };
    assert_eq!(send("alice", "k1").status().as_u16(), 200);
    assert_eq!(send("alice", "k2").status().as_u16(), 200);
    let refused = send("alice", "k3");
    assert_eq!(refused.status().as_u16(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=2).contains(&wait),
        "one request per 2 s: Retry-After {wait}"
    );
    assert_eq!(refused.json::<Value>().unwrap()["error"], "rate_limited");
    assert_eq!(
        send("bob", "k1").status().as_u16(),
        200,
        "bob has his own limit"
    );
    // A request without a valid token is refused before it counts against anyone.
    let anonymous = client().post(server.url("/v1/upload")).send().unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert_eq!(counts(&db), (3, 3), "the refused upload stored nothing");
    std::thread::sleep(std::time::Duration::from_secs(wait));
    assert_eq!(
        send("alice", "k3").status().as_u16(),
        200,
        "after Retry-After"
    );
    let text = client()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(sample(&text, "slowfast_rate_limited_total"), Some(1.0));
}

#[test]
fn a_tampered_bundle_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    std::fs::write(dir.path().join("fast.onnx"), b"tampered").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slowfast"))
        .args(["serve", "--bundle"])
        .arg(dir.path())
        .args(["--db", &dir.path().join("x.db").display().to_string()])
        .args(["--listen", "127.0.0.1:0", "--secret", SECRET])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fast.onnx") && err.contains("bytes"), "{err}");
}

#[test]
#[ignore = "needs PostgreSQL"]
fn two_instances_on_one_postgres_store_each_key_once() {
    let dir = tempfile::tempdir().unwrap();
    write_bundle(dir.path());
    let db = fresh_db(Backend::Postgres, dir.path());
    let a = Server::start(dir.path(), &db, dir.path());
    let b = Server::start(dir.path(), &db, dir.path());
    // 8 threads send the same 20 keys, alternating instances: every key lands on both.
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (a, b) = (&a, &b);
                scope.spawn(move || {
                    (0..20)
                        .map(|k| {
                            let server = if (t + k) % 2 == 0 { a } else { b };
                            let r = client()
                                .post(server.url("/v1/upload"))
                                .header(AUTHORIZATION, format!("Bearer {}", token("carol")))
                                .json(&upload_body(&format!("key-{k}"), &["i1", "i2"], &["i5"]))
                                .send()
                                .unwrap();
                            assert_eq!(r.status().as_u16(), 200);
                            r.json::<Value>().unwrap()
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
    let fresh = answers.iter().filter(|a| a["duplicate"] == false).count();
    assert_eq!(fresh, 20, "each key is accepted as new exactly once");
    assert_eq!(counts(&db), (20, 60));
}

/// The exporter's fixture bundle (a real `slow.onnx`, 100 items, d = 32).
fn fixture_bundle() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/bundle")
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
fn the_items_of_the_latest_exposures_are_not_served(b: Backend) {
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
