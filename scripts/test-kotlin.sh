#!/usr/bin/env bash
# The Kotlin bindings on the desktop JVM (docs/architecture.md §9): builds the host cdylib of slowfast-ffi,
# generates the Kotlin with its in-crate uniffi-bindgen, compiles android/'s library, tests and
# sample with kotlinc against JNA, and runs the JUnit tests and the sample; then the Swift
# checks that need no Swift (ios/check-bindings.sh) on the same build, and that the README's
# snippets are their tests' code (scripts/lib/check_snippets.py).
#   scripts/test-kotlin.sh          tests
#   scripts/test-kotlin.sh --install  only the installs (Debian packages, the Kotlin compiler)
#   scripts/test-kotlin.sh --bench  + the FFI benchmark on a release build: p50 of a rerank of
#                                   100 candidates and of one record_exposure from Kotlin vs
#                                   the same calls from Rust (bindings/examples/rerank.rs)
# The tests reuse the host build of `cargo test --workspace` (see cargo_host_build).
# Installs what it needs (Debian: JDK, JNA, JUnit; npm: kotlin-compiler) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/install.sh

BENCH=0
[ "${1:-}" = "--bench" ] && BENCH=1
BUNDLE=${SLOWFAST_BUNDLE:-core/tests/data/bundle}
KOTLIN_VERSION=2.4.20
TOOLS=${SLOWFAST_TOOLS:-$HOME/.cache/slowfast-tools}

command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
command -v npm >/dev/null || apt_install npm
apt_install libjna-java junit4
KOTLIN_HOME=$TOOLS/node_modules/kotlin-compiler
if ! grep -q "\"version\": \"$KOTLIN_VERSION\"" "$KOTLIN_HOME/package.json" 2>/dev/null; then
  echo "== npm install kotlin-compiler@$KOTLIN_VERSION"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS" "kotlin-compiler@$KOTLIN_VERSION" >/dev/null
fi
[ "${1:-}" = "--install" ] && exit 0

if [ $BENCH = 1 ]; then
  PROFILE=release
  echo "== cargo build -p slowfast-ffi --release"
  cargo build -p slowfast-ffi --release --lib --bin uniffi-bindgen --example rerank --locked
else
  PROFILE=debug
  echo "== cargo build (host, as the workspace tests build it)"
  cargo_host_build
fi
TARGET=$(cargo_target_dir)
LIBDIR=$TARGET/$PROFILE
WORK=$TARGET/kotlin
rm -rf "$WORK" && mkdir -p "$WORK"

echo "== uniffi-bindgen generate (kotlin)"
"$LIBDIR/uniffi-bindgen" generate --library "$LIBDIR/libslowfast_ffi.so" --language kotlin \
  --no-format --out-dir "$WORK/generated" >/dev/null

CP=/usr/share/java/jna.jar:/usr/share/java/junit4.jar:/usr/share/java/hamcrest-core.jar
echo "== kotlinc (library + tests + sample)"
"$KOTLIN_HOME/bin/kotlinc" -nowarn -cp "$CP" -d "$WORK/classes" \
  "$WORK/generated" android/src/main/kotlin android/src/test/kotlin android/sample/src/main/kotlin \
  2>&1 | grep -v "^warning:" || true
[ -d "$WORK/classes/dev/slowfast" ] || { echo "kotlinc failed"; exit 1; }

RUN=(java -Djna.library.path="$LIBDIR" -Dslowfast.bundle="$BUNDLE"
  -cp "$WORK/classes:$KOTLIN_HOME/lib/kotlin-stdlib.jar:$CP")
failed=0
echo "== JUnit"
"${RUN[@]}" org.junit.runner.JUnitCore dev.slowfast.SlowFastTest dev.slowfast.AsyncTest dev.slowfast.ReadmeTest | tee "$WORK/junit.log" || failed=1
echo "== sample app"
"${RUN[@]}" dev.slowfast.sample.MainKt "$BUNDLE" || failed=1
echo "== swift bindings (header and C ABI)"
ios/check-bindings.sh "$LIBDIR" "$TARGET" || { failed=1; echo "swift: check-bindings.sh FAILED"; }
echo "== README snippets (Kotlin: ReadmeTest, Swift: the XCTest mirror)"
python3 scripts/lib/check_snippets.py README.md || failed=1

if [ $BENCH = 1 ]; then
  echo "== benchmark ($PROFILE build; p50 of 500 calls after 100 warm-up calls)"
  "$LIBDIR/examples/rerank" bench "$BUNDLE" | tee "$WORK/bench.txt"
  "${RUN[@]}" dev.slowfast.FfiBenchKt | tee -a "$WORK/bench.txt"
  awk '/rerank\(100\)/ { r[$1] = $3; e[$1] = $6 }
    END { printf "kotlin overhead over rust: rerank(100) %+.1f us (%+.1f %%), record_exposure %+.1f us (%+.1f %%)\n",
      r["kotlin"] - r["rust"], 100 * (r["kotlin"] / r["rust"] - 1), e["kotlin"] - e["rust"], 100 * (e["kotlin"] / e["rust"] - 1) }' "$WORK/bench.txt"
fi

awk '/^OK \(/ { gsub(/[()]/, ""); print "kotlin: " $2 " passed, 0 failed" }
     /^Tests run:/ { gsub(/,/, ""); print "kotlin: " $3 - $5 " passed, " $5 " failed" }' "$WORK/junit.log"
exit $failed
