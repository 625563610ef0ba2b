//! A server's life: connection limits, stops under load, a killed process, metrics, the rate
//! limit, a tampered bundle, two instances on one PostgreSQL.

use super::*;

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
