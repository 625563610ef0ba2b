#!/usr/bin/env bash
# What can be checked of the Swift package without Swift (scripts/test-kotlin.sh calls this with
# the host build): the generated Swift, header and modulemap; the header compiled as C
# (-fsyntax-only); the modulemap free of the `framework` keyword; and Tests/c/abi_smoke.c
# calling the exported C ABI once, linked against the host cdylib.
#   ios/check-bindings.sh <dir with libslowfast_ffi.so and uniffi-bindgen> <work dir>
set -euo pipefail
cd "$(dirname "$0")/.."
LIBDIR=$1
WORK=$2/swift
rm -rf "$WORK" && mkdir -p "$WORK"
"$LIBDIR/uniffi-bindgen" generate --library "$LIBDIR/libslowfast_ffi.so" --language swift \
  --no-format --out-dir "$WORK" >/dev/null
for f in SlowFastSDK.swift SlowFastFFI.h SlowFastFFI.modulemap; do
  [ -s "$WORK/$f" ] || { echo "uniffi-bindgen did not write $f" >&2; exit 1; }
done
if grep -q framework "$WORK/SlowFastFFI.modulemap"; then
  echo "the modulemap uses the framework keyword" >&2; exit 1
fi
CC=${CC:-gcc}
echo '#include "SlowFastFFI.h"' | "$CC" -fsyntax-only -std=c11 -Wall -Wextra -Werror -D_Nullable= -D_Nonnull= -I "$WORK" -x c -
"$CC" -std=c11 -Wall -Werror -D_Nullable= -D_Nonnull= -I "$WORK" ios/Tests/c/abi_smoke.c \
  -L "$LIBDIR" -lslowfast_ffi -Wl,-rpath,"$LIBDIR" -o "$WORK/abi_smoke"
VERSION=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "slowfast-ffi"))')
CONTRACT=$(sed -n 's/.*bindings_contract_version = \([0-9]*\).*/\1/p' "$WORK/SlowFastSDK.swift")
"$WORK/abi_smoke" "$VERSION" "$CONTRACT"
echo "swift: bindings generated, header compiles as C, C ABI smoke test passed"
