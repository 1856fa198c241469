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

profile=${SPKEY_MOBILE_PROFILE:-release}
cargo build -p spkey-mobile --profile "$profile" --locked
# The generator has its own lock file (mobile/bindgen), pinned to the same UniFFI.
cargo build --manifest-path mobile/bindgen/Cargo.toml --target-dir target/bindgen --locked
dir=target/$([ "$profile" = dev ] && echo debug || echo "$profile")
for lib in "$dir"/libspkey_mobile.so "$dir"/libspkey_mobile.dylib; do
  [ -f "$lib" ] && break
done

out=mobile/build
rm -rf "$out/generated" "$out/kotlin"
for language in kotlin swift python; do
  target/bindgen/debug/uniffi-bindgen generate --library "$lib" --language "$language" \
    --out-dir "$out/generated/$language" --no-format >/dev/null
done
cp "$lib" "$out/generated/python/"

# The Kotlin compiler, pinned by mobile/package-lock.json (scripts/setup
# installs it).
kotlin=mobile/node_modules/kotlin-compiler
[ -x "$kotlin/bin/kotlinc-jvm" ] || { echo "no Kotlin compiler: run bash scripts/setup first" >&2; exit 1; }
mkdir -p "$out/kotlin"
"$kotlin/bin/kotlinc-jvm" -nowarn -jvm-target 17 \
  -cp "$(bash mobile/classpath.sh)" \
  -d "$out/kotlin/spkey-store.jar" \
  "$out/generated/kotlin" mobile/kotlin/src
cp "$lib" "$out/kotlin/"
echo "built $out/kotlin/spkey-store.jar and $(basename "$lib")"
