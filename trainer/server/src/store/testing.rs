//! Databases for tests: a fresh PostgreSQL database per test on the server
//! `SLOWFAST_TEST_PG_URL` names (`. scripts/postgres.sh` starts one). Built for this crate's
//! tests and, with the `testing` feature, for the tests of the crates above it.

/// The server the tests marked `#[ignore = "needs PostgreSQL"]` run against.
pub const PG_URL_ENV: &str = "SLOWFAST_TEST_PG_URL";

/// The URL of a new, empty database on [`PG_URL_ENV`]'s server. The tests that call it are
/// `#[ignore = "needs PostgreSQL"]`, so it runs only when asked (`-- --ignored`), and then it
/// panics when the server is not configured rather than let a test pass without testing
/// anything.
pub fn fresh_postgres_database() -> String {
    let base = std::env::var(PG_URL_ENV).unwrap_or_else(|_| {
        panic!(
            "{PG_URL_ENV} must name a PostgreSQL server for the tests marked `needs PostgreSQL` \
             (`. scripts/postgres.sh` starts one)"
        )
    });
    let name = format!("slowfast_{}", uuid::Uuid::new_v4().simple());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for creating the test database")
        .block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&base)
                .await
                .expect("the test PostgreSQL server accepts connections");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await
                .expect("the test PostgreSQL server creates a database");
        });
    let (prefix, _) = base.rsplit_once('/').expect("a URL ending in /database");
    format!("{prefix}/{name}")
}
