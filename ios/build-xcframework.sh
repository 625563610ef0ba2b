#!/usr/bin/env bash
# Builds ios/SlowFastFFI.xcframework and the generated Swift on a Mac with Xcode and rustup:
#   device slice     aarch64-apple-ios
#   simulator slice  aarch64-apple-ios-sim + x86_64-apple-ios (one fat library, lipo)
#   macOS slice      aarch64-apple-darwin + x86_64-apple-darwin (so `swift test` runs on the Mac)
# The headers directory holds SlowFastFFI.h and `module.modulemap` — named exactly so, and
# without the `framework` keyword, because the slices are static libraries, not frameworks.
# Then: `cd ios && swift test` runs the XCTest suite against core/tests/data/bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
DEVICE=aarch64-apple-ios
SIMULATOR=(aarch64-apple-ios-sim x86_64-apple-ios)
MACOS=(aarch64-apple-darwin x86_64-apple-darwin)
OUT=ios/build
rm -rf "$OUT" ios/SlowFastFFI.xcframework && mkdir -p "$OUT/headers" "$OUT/simulator" "$OUT/macos"

rustup target add "$DEVICE" "${SIMULATOR[@]}" "${MACOS[@]}"
for t in "$DEVICE" "${SIMULATOR[@]}" "${MACOS[@]}"; do
  cargo build -p slowfast-ffi --lib --no-default-features --locked --profile "$PROFILE" --target "$t"
done
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
lib() { echo "$TARGET/$1/$PROFILE/libslowfast_ffi.a"; }
lipo -create "$(lib "${SIMULATOR[0]}")" "$(lib "${SIMULATOR[1]}")" -output "$OUT/simulator/libslowfast_ffi.a"
lipo -create "$(lib "${MACOS[0]}")" "$(lib "${MACOS[1]}")" -output "$OUT/macos/libslowfast_ffi.a"

# Swift, header and modulemap from the library's own metadata (the in-crate uniffi-bindgen).
cargo run -q -p slowfast-ffi --locked --bin uniffi-bindgen -- generate \
  --library "$TARGET/${MACOS[0]}/$PROFILE/libslowfast_ffi.dylib" --language swift --out-dir "$OUT/generated"
cp "$OUT/generated/SlowFastFFI.h" "$OUT/headers/"
mv "$OUT/generated/SlowFastFFI.modulemap" "$OUT/headers/module.modulemap"
if grep -q framework "$OUT/headers/module.modulemap"; then
  echo "module.modulemap must not use the framework keyword" >&2; exit 1
fi
cp "$OUT/generated/SlowFastSDK.swift" ios/Sources/SlowFastSDK/

xcodebuild -create-xcframework \
  -library "$(lib "$DEVICE")" -headers "$OUT/headers" \
  -library "$OUT/simulator/libslowfast_ffi.a" -headers "$OUT/headers" \
  -library "$OUT/macos/libslowfast_ffi.a" -headers "$OUT/headers" \
  -output ios/SlowFastFFI.xcframework
echo "ios/SlowFastFFI.xcframework and ios/Sources/SlowFastSDK/SlowFastSDK.swift are ready"
