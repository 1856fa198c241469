#!/usr/bin/env bash
# Builds SpkeyStoreFFIFFI.xcframework (iOS devices, the iOS simulator on Apple
# silicon and Intel, macOS) and copies the generated Swift beside
# Package.swift. Runs on a Mac with Xcode and
#   rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin
# Untested: these machines have no Swift toolchain.
set -euo pipefail
cd "$(dirname "$0")/../.."

targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin)
for target in "${targets[@]}"; do
  cargo build -p spkey-mobile --release --locked --target "$target"
done
cargo build --manifest-path mobile/bindgen/Cargo.toml --target-dir target/bindgen --locked

out=mobile/swift/build
rm -rf "$out" && mkdir -p "$out/headers" "$out/Sources/SpkeyStoreFFI" "$out/sim"
target/bindgen/debug/uniffi-bindgen generate --library target/aarch64-apple-darwin/release/libspkey_mobile.dylib \
  --language swift --out-dir "$out/generated"
cp "$out/generated/SpkeyStoreFFI.swift" "$out/Sources/SpkeyStoreFFI/"
cp "$out/generated/SpkeyStoreFFIFFI.h" "$out/headers/"
cp "$out/generated/SpkeyStoreFFIFFI.modulemap" "$out/headers/module.modulemap"

# One library per platform: the two simulator architectures in one.
lipo -create target/aarch64-apple-ios-sim/release/libspkey_mobile.a \
  target/x86_64-apple-ios/release/libspkey_mobile.a -output "$out/sim/libspkey_mobile.a"
xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/release/libspkey_mobile.a -headers "$out/headers" \
  -library "$out/sim/libspkey_mobile.a" -headers "$out/headers" \
  -library target/aarch64-apple-darwin/release/libspkey_mobile.a -headers "$out/headers" \
  -output "$out/SpkeyStoreFFIFFI.xcframework"
echo "built $out/SpkeyStoreFFIFFI.xcframework"
