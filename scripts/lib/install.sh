# Sourced by scripts/test-kotlin.sh and scripts/test-aarch64.sh: idempotent, quiet installs for
# a bare Debian machine (CI), nothing installed when it is already there; and the host build
# both scripts share.

# The prefix that runs apt-get as root.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# apt_install PKG...: installs the Debian packages not yet installed.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== apt-get install ${missing[*]}"
  as_root apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The cargo target directory (honours CARGO_TARGET_DIR and the workspace config).
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

# cargo_host_build: builds for the host what the scripts run (the bindings' cdylib, its
# uniffi-bindgen, the rerank example) with the package set and features of
# `cargo test --workspace`, so that after scripts/test-all.sh's host tests nothing recompiles.
cargo_host_build() {
  cargo build --workspace --lib --examples --bin uniffi-bindgen --locked
}
