#!/usr/bin/env bash
# The Kotlin SDK's tests on the JVM (kotlin-test + JUnit 4) against the host
# library through JNA — how UniFFI's own Kotlin tests run; no Android device
# or emulator here — then the Python bindings' pytest suite. Builds the SDK (mobile/build.sh), the CLI and the hub the
# tests drive, compiles the tests with the README's Kotlin example, and runs
# them. SPKEY_LONG=1 kills the JVM 100 times instead of 20.
set -euo pipefail
cd "$(dirname "$0")/.."

# The debug library and the binaries `cargo test --workspace` builds (the
# step before this one in scripts/test, so this is a no-op there).
cargo test --workspace --locked --no-run
SPKEY_MOBILE_LIB=target/debug/deps/libspkey_mobile.so bash mobile/build.sh
out=mobile/build/kotlin
kotlin=mobile/node_modules/kotlin-compiler
classpath="$out/spkey-store.jar:$(bash mobile/classpath.sh test):/usr/share/java/gson.jar"

# The README's example must compile: its first ```kotlin block.
mkdir -p mobile/build/readme
awk '/^```kotlin$/ { inside = 1; next } /^```$/ && inside { exit } inside' README.md \
  >mobile/build/readme/ReadmeExample.kt
[ -s mobile/build/readme/ReadmeExample.kt ] || { echo "README.md has no kotlin example"; exit 1; }

"$kotlin/bin/kotlinc-jvm" -nowarn -jvm-target 17 -cp "$classpath" \
  -d "$out/tests.jar" mobile/kotlin/test mobile/kotlin/bench mobile/build/readme/ReadmeExample.kt
java -Djna.library.path="$out" \
  -Dspkey.cli="$PWD/target/debug/spkey" \
  -Dspkey.hub="$PWD/target/debug/spkey-hub" \
  -Dspkey.fixtures="$PWD/tests/fixtures" \
  -cp "$out/tests.jar:$classpath" \
  org.junit.runner.JUnitCore co.spkey.store.SpkeyStoreTest
# The benchmark program once, tiny (its figures: bash mobile/bench.sh).
java -Djna.library.path="$out" -cp "$out/tests.jar:$classpath" co.spkey.store.Bench

# The same layer from Python (the generated module, the library beside it).
SPKEY_PYTHON="$PWD/mobile/build/generated/python" SPKEY_HUB="$PWD/target/debug/spkey-hub" \
  python3 -m pytest -q -p no:cacheprovider mobile/python
