#!/usr/bin/env bash
# Builds the mobile SDK from a clean checkout:
# - the host library (release), target/release/libspkey_mobile.{so,dylib};
# - the Kotlin, Swift and Python bindings UniFFI generates from it
#   (mobile/build/generated/{kotlin,swift,python});
# - the Kotlin SDK (mobile/kotlin) compiled with them into
#   mobile/build/kotlin/spkey-store.jar, the host library beside it, so that
#   `java -Djna.library.path=mobile/build/kotlin` finds it.
# Needs what scripts/setup installs: Java 17+, JNA 5, the pinned Kotlin
# compiler.
set -euo pipefail
cd "$(dirname "$0")/.."

# SPKEY_MOBILE_LIB: a library already built (the tests use the debug one
# `cargo test --workspace` made); otherwise a release build.
lib=${SPKEY_MOBILE_LIB:-}
if [ -z "$lib" ]; then
  cargo build -p spkey-mobile --release --locked
  for lib in target/release/libspkey_mobile.so target/release/libspkey_mobile.dylib; do
    [ -f "$lib" ] && break
  done
fi
# The generator has its own lock file (mobile/bindgen), pinned to the same UniFFI.
cargo build --manifest-path mobile/bindgen/Cargo.toml --target-dir target/bindgen --locked

out=mobile/build
rm -rf "$out/generated" "$out/kotlin"
for language in kotlin swift python; do
  target/bindgen/debug/uniffi-bindgen generate --library "$lib" --language "$language" \
    --out-dir "$out/generated/$language" --no-format >/dev/null
done
cp "$lib" "$out/generated/python/libspkey_mobile.${lib##*.}"

# The Kotlin compiler, pinned by mobile/package-lock.json (scripts/setup
# installs it).
kotlin=mobile/node_modules/kotlin-compiler
[ -x "$kotlin/bin/kotlinc-jvm" ] || { echo "no Kotlin compiler: run bash scripts/setup first" >&2; exit 1; }
mkdir -p "$out/kotlin"
"$kotlin/bin/kotlinc-jvm" -nowarn -jvm-target 17 \
  -cp "$(bash mobile/classpath.sh)" \
  -d "$out/kotlin/spkey-store.jar" \
  "$out/generated/kotlin" mobile/kotlin/src
cp "$lib" "$out/kotlin/libspkey_mobile.${lib##*.}"
echo "built $out/kotlin/spkey-store.jar and libspkey_mobile.${lib##*.}"
