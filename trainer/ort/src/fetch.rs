//! Fetching ONNX Runtime's shared library from its pinned PyPI wheel into a user cache, the way
//! ort's own `download-binaries` feature does it at build time — here at first use, from the
//! package index every Python machine reaches, with a progress line and a checked hash.
//!
//! A wheel is a zip file; the library ort loads is one member of it
//! (`onnxruntime/capi/libonnxruntime.so.<version>` on Linux). The wheel's SHA-256 is pinned per
//! platform below, so a mirror ([`WHEEL_URL_ENV`]) may serve it but cannot change it. The
//! library is written to a temporary file and renamed into place, so concurrent first uses (the
//! test binaries of one `cargo test`) never load a half-written file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The ONNX Runtime release this project is built against (ort's `api-31`).
pub const VERSION: &str = "1.31.1";

/// Overrides the wheel's download address (a PyPI mirror); the pinned hash still applies.
pub const WHEEL_URL_ENV: &str = "SLOWFAST_ORT_WHEEL_URL";

/// Overrides the cache directory (default: `$XDG_CACHE_HOME/slowfast`, else
/// `~/.cache/slowfast`; `~/Library/Caches/slowfast` on macOS).
pub const CACHE_DIR_ENV: &str = "SLOWFAST_CACHE_DIR";

/// Why the library could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No wheel of the pinned release is known for this operating system and CPU.
    #[error(
        "no ONNX Runtime {VERSION} wheel is pinned for {0}; set ORT_DYLIB_PATH to the library"
    )]
    Unsupported(String),
    /// No cache directory could be determined.
    #[error("no cache directory: set {CACHE_DIR_ENV} or HOME")]
    NoCacheDir,
    /// The download failed (network, TLS, HTTP status).
    #[error("download {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The downloaded wheel is not the pinned one.
    #[error("{url} has SHA-256 {actual}, expected {expected}")]
    Hash {
        url: String,
        expected: String,
        actual: String,
    },
    /// The wheel is not a zip file, or lacks the library.
    #[error("wheel {url}: {source}")]
    Zip {
        url: String,
        #[source]
        source: zip::result::ZipError,
    },
    /// The cache could not be written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One platform's pinned wheel: where it is, its hash, and the library's path inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wheel {
    pub url: &'static str,
    pub sha256: &'static str,
    pub member: &'static str,
}

impl Wheel {
    /// The library's file name (the last component of [`Wheel::member`]).
    pub fn file_name(&self) -> &'static str {
        self.member.rsplit('/').next().unwrap_or(self.member)
    }
}

/// The wheel for the platform this binary was built for (the CPython 3.12 build: the library
/// inside does not depend on Python).
pub fn host_wheel() -> Result<Wheel, FetchError> {
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        Ok(Wheel {
            url: "https://files.pythonhosted.org/packages/eb/27/c6a823bac55b2977bea2027c3ec9393a2c1002cb9a09eb40354563e02730/onnxruntime-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl",
            sha256: "1f3dea47f2f0e5117c2404cea7d21fd253ae7836a3bf167a501cdfbb2600d536",
            member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
        })
    } else if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
        Ok(Wheel {
            url: "https://files.pythonhosted.org/packages/ba/e4/1ed1a7a5f4702d899091fa2b976d377995250c307326ec8dc9ae6378aa13/onnxruntime-1.31.1-cp312-cp312-manylinux_2_28_aarch64.whl",
            sha256: "0b9a492176886992e0e875f06bc0367e333f5fff11711a2d642e18b02f3009cc",
            member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
        })
    } else if cfg!(all(target_os = "macos", target_arch = "aarch64")) {
        Ok(Wheel {
            url: "https://files.pythonhosted.org/packages/0e/f7/cecc0efeeea83bff2f7789ae1b80f27fa0f0210d6d9d66d1f0031a6b5e47/onnxruntime-1.31.1-cp312-cp312-macosx_14_0_arm64.whl",
            sha256: "96dd2564b10ea7153ad9c207e7cd8e5917cb3ba521e0e0a62ac03486fdc8d56c",
            member: "onnxruntime/capi/libonnxruntime.1.31.1.dylib",
        })
    } else {
        Err(FetchError::Unsupported(format!(
            "{}-{}",
            std::env::consts::OS,
            std::env::consts::ARCH
        )))
    }
}

/// The cache directory the library is kept in.
pub fn cache_dir() -> Result<PathBuf, FetchError> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = env(CACHE_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = env("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("slowfast"));
    }
    let home = PathBuf::from(env("HOME").ok_or(FetchError::NoCacheDir)?);
    Ok(if cfg!(target_os = "macos") {
        home.join("Library/Caches/slowfast")
    } else {
        home.join(".cache/slowfast")
    })
}

/// Where `wheel`'s library lives in the cache `dir`.
pub fn cached_path(dir: &Path, wheel: &Wheel) -> PathBuf {
    dir.join(format!("onnxruntime-{VERSION}"))
        .join(wheel.file_name())
}

/// The cached library, downloading and unpacking the pinned wheel first when it is not there.
pub fn fetch() -> Result<PathBuf, FetchError> {
    let wheel = host_wheel()?;
    let target = cached_path(&cache_dir()?, &wheel);
    if target.is_file() {
        return Ok(target);
    }
    let url = std::env::var(WHEEL_URL_ENV).unwrap_or_else(|_| wheel.url.to_owned());
    eprintln!(
        "slowfast: ONNX Runtime {VERSION} is not cached; downloading it from {url} into {} \
         (once; set ORT_DYLIB_PATH to use a library of your own)",
        target.parent().unwrap_or(&target).display()
    );
    let bytes = download(&url)?;
    install(&bytes, &url, &wheel, &target)?;
    eprintln!(
        "slowfast: ONNX Runtime {VERSION} ready at {}",
        target.display()
    );
    Ok(target)
}

/// Checks `bytes` against the pinned hash, takes the library out of the wheel and writes it to
/// `target` atomically.
pub fn install(bytes: &[u8], url: &str, wheel: &Wheel, target: &Path) -> Result<(), FetchError> {
    let actual = hex::encode(Sha256::digest(bytes));
    if actual != wheel.sha256 {
        return Err(FetchError::Hash {
            url: url.to_owned(),
            expected: wheel.sha256.to_owned(),
            actual,
        });
    }
    let zip_err = |source| FetchError::Zip {
        url: url.to_owned(),
        source,
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zip_err)?;
    let mut member = archive.by_name(wheel.member).map_err(zip_err)?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    std::io::copy(&mut member, &mut tmp).map_err(io(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io(target))?;
    tmp.persist(target).map_err(|e| FetchError::Io {
        path: target.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

/// How long to wait before each retry of a download that failed on the way (a refused or
/// reset connection, a timeout, a 429 or 5xx answer): a first run on a flaky network should
/// not end on one dropped packet. Other answers (404, 403) are final.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(8)];

/// The wheel's bytes, with a progress line on stderr, retried after [`RETRY_DELAYS`].
fn download(url: &str) -> Result<Vec<u8>, FetchError> {
    download_retrying(url, &RETRY_DELAYS)
}

/// [`download`], waiting `delays[k]` before attempt `k + 2`.
///
/// Each transfer runs on a thread of its own: reqwest's blocking client starts and drops a
/// runtime of its own, which tokio refuses on a thread already inside an async context (the
/// sync server and the demo first load the library from one).
fn download_retrying(url: &str, delays: &[Duration]) -> Result<Vec<u8>, FetchError> {
    let mut delays = delays.iter();
    loop {
        let attempt =
            std::thread::scope(|scope| scope.spawn(|| download_on_this_thread(url)).join())
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match (attempt, delays.next()) {
            (Err(e), Some(delay)) if e.is_transient() => {
                eprintln!("slowfast: {e}; trying again in {} s", delay.as_secs_f32());
                std::thread::sleep(*delay);
            }
            (attempt, _) => return attempt,
        }
    }
}

impl FetchError {
    /// Whether a download that failed this way may succeed when sent again: the connection
    /// failed or timed out, the server was busy or failing (429, 5xx), or the body broke off
    /// (a download's only `Io` error).
    fn is_transient(&self) -> bool {
        match self {
            FetchError::Http { source, .. } => source.status().is_none_or(|status| {
                status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            }),
            FetchError::Io { .. } => true,
            FetchError::Unsupported(_)
            | FetchError::NoCacheDir
            | FetchError::Hash { .. }
            | FetchError::Zip { .. } => false,
        }
    }
}

fn download_on_this_thread(url: &str) -> Result<Vec<u8>, FetchError> {
    let http = |source| FetchError::Http {
        url: url.to_owned(),
        source,
    };
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(http)?;
    let mut response = client
        .get(url)
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .map_err(http)?;
    let mut bytes = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
    copy_with_progress(&mut response, &mut bytes).map_err(|source| FetchError::Io {
        path: PathBuf::from(url),
        source,
    })?;
    Ok(bytes)
}

/// Copies the download into `out` with a progress line on stderr (feature `progress`, on by
/// default: the CLI's first run shows it; the server crate builds without it).
#[cfg(feature = "progress")]
fn copy_with_progress(
    response: &mut reqwest::blocking::Response,
    out: &mut Vec<u8>,
) -> std::io::Result<u64> {
    let bar = indicatif::ProgressBar::with_draw_target(
        response.content_length(),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "  onnxruntime [{bar:30}] {bytes}/{total_bytes} ({eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let copied = std::io::copy(&mut bar.wrap_read(response), out)?;
    bar.finish_and_clear();
    Ok(copied)
}

/// Copies the download into `out`, silently (without the `progress` feature).
#[cfg(not(feature = "progress"))]
fn copy_with_progress(
    response: &mut reqwest::blocking::Response,
    out: &mut Vec<u8>,
) -> std::io::Result<u64> {
    std::io::copy(response, out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A wheel-shaped zip holding `member` with `contents`, and a [`Wheel`] pinned to it.
    fn fake_wheel(member: &'static str, contents: &[u8]) -> (Vec<u8>, Wheel) {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("onnxruntime/__init__.py", options).unwrap();
        zip.write_all(b"").unwrap();
        zip.start_file(member, options).unwrap();
        zip.write_all(contents).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let sha = hex::encode(Sha256::digest(&bytes));
        let wheel = Wheel {
            url: "https://example.invalid/onnxruntime.whl",
            sha256: Box::leak(sha.into_boxed_str()),
            member,
        };
        (bytes, wheel)
    }

    #[test]
    fn installs_the_library_member_of_a_pinned_wheel() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, wheel) = fake_wheel("onnxruntime/capi/libonnxruntime.so.1.31.1", b"ELF...");
        let target = cached_path(dir.path(), &wheel);
        assert!(target.ends_with("onnxruntime-1.31.1/libonnxruntime.so.1.31.1"));
        install(&bytes, wheel.url, &wheel, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"ELF...");
        // Nothing but the library is left in the cache directory (no temporary files).
        let names: Vec<_> = std::fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            [std::ffi::OsString::from("libonnxruntime.so.1.31.1")]
        );
    }

    #[test]
    fn a_wheel_with_another_hash_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (mut bytes, wheel) = fake_wheel("onnxruntime/capi/libonnxruntime.so.1.31.1", b"x");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let target = cached_path(dir.path(), &wheel);
        let err = install(&bytes, wheel.url, &wheel, &target).unwrap_err();
        assert!(matches!(err, FetchError::Hash { .. }), "{err}");
        assert!(!target.exists());
    }

    #[test]
    fn a_wheel_without_the_library_is_a_zip_error() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, mut wheel) = fake_wheel("onnxruntime/capi/other.so", b"x");
        wheel.member = "onnxruntime/capi/libonnxruntime.so.1.31.1";
        let target = cached_path(dir.path(), &wheel);
        let err = install(&bytes, wheel.url, &wheel, &target).unwrap_err();
        assert!(matches!(err, FetchError::Zip { .. }), "{err}");
        assert!(!target.exists());
    }

    const WHEEL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nwheel";
    const UNAVAILABLE: &[u8] =
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const NOT_FOUND: &[u8] =
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

    /// A loopback HTTP server, one request per connection: the n-th request gets `answers[n]`,
    /// a 404 past their end.
    struct Server {
        url: String,
        stop: Arc<AtomicBool>,
        thread: std::thread::JoinHandle<usize>,
    }

    impl Server {
        fn start(answers: Vec<&'static [u8]>) -> Self {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let url = format!("http://{}/wheel.whl", listener.local_addr().unwrap());
            let stop = Arc::new(AtomicBool::new(false));
            let stopped = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                let mut requests = 0;
                while !stopped.load(Ordering::SeqCst) {
                    let mut stream = match listener.accept() {
                        Ok((stream, _)) => stream,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                        Err(e) => panic!("accept: {e}"),
                    };
                    stream.set_nonblocking(false).unwrap();
                    let mut request = Vec::new();
                    let mut byte = [0u8; 1];
                    while !request.ends_with(b"\r\n\r\n") {
                        std::io::Read::read_exact(&mut stream, &mut byte).unwrap();
                        request.push(byte[0]);
                    }
                    stream
                        .write_all(answers.get(requests).copied().unwrap_or(NOT_FOUND))
                        .unwrap();
                    requests += 1;
                }
                requests
            });
            Self { url, stop, thread }
        }

        /// Stops the server; the number of requests it had.
        fn requests(self) -> usize {
            self.stop.store(true, Ordering::SeqCst);
            self.thread.join().unwrap()
        }
    }

    /// The sync server first loads ONNX Runtime from inside tokio; the blocking download must
    /// not tear down a runtime there.
    #[test]
    fn a_download_from_inside_an_async_context_completes() {
        let server = Server::start(vec![WHEEL]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let bytes = runtime.block_on(async { download(&server.url) }).unwrap();
        assert_eq!(bytes, b"wheel");
        assert_eq!(server.requests(), 1);
    }

    #[test]
    fn a_busy_server_is_asked_again_and_a_missing_file_is_not() {
        let no_wait = [Duration::ZERO; 2];
        let server = Server::start(vec![UNAVAILABLE, UNAVAILABLE, WHEEL]);
        assert_eq!(download_retrying(&server.url, &no_wait).unwrap(), b"wheel");
        assert_eq!(server.requests(), 3);

        // Retries run out: the last failure is the error.
        let server = Server::start(vec![UNAVAILABLE, UNAVAILABLE, WHEEL]);
        let err = download_retrying(&server.url, &no_wait[..1]).unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
        assert_eq!(server.requests(), 2);

        // A 404 is final: one request, however many retries were allowed.
        let server = Server::start(vec![NOT_FOUND, WHEEL]);
        let err = download_retrying(&server.url, &no_wait).unwrap_err();
        assert!(
            matches!(&err, FetchError::Http { .. }) && !err.is_transient(),
            "{err}"
        );
        assert!(err.to_string().contains("404"), "{err}");
        assert_eq!(server.requests(), 1);
    }

    #[test]
    fn the_host_has_a_pinned_wheel_of_the_built_against_release() {
        let wheel = host_wheel().unwrap();
        assert!(wheel.url.contains(&format!("onnxruntime-{VERSION}-")));
        assert!(wheel.member.contains(VERSION));
        assert_eq!(wheel.sha256.len(), 64);
    }
}
