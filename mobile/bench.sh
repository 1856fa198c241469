#!/usr/bin/env bash
# The mobile SDK's figures, in one run: createUser on the wire path from
# Kotlin (through JNA) against the same calls made natively, in memory and on
# a file with durable commits, and the host library's size stripped. Writes
# mobile/results/bench.md from the programs' own output. Never asserted:
# the target (Kotlin at 0.8x native or better) is judged in the table.
set -euo pipefail
cd "$(dirname "$0")/.."

bash mobile/build.sh >/dev/null
out=mobile/build/kotlin
kotlin=mobile/node_modules/kotlin-compiler
classpath="$out/spkey-store.jar:$(bash mobile/classpath.sh)"
"$kotlin/bin/kotlinc-jvm" -nowarn -jvm-target 17 -cp "$classpath" -d "$out/bench.jar" mobile/kotlin/bench

native=$(cargo bench --locked -q -p spkey-mobile --bench native 2>/dev/null | grep '^native ')
kotlin_out=$(java -Djna.library.path="$out" -cp "$out/bench.jar:$classpath" co.spkey.store.Bench --full)
echo "$native"
echo "$kotlin_out"
figure() { awk -v what="$2" '$2 == what { print $3 }' <<<"$1"; }
lib=$(ls "$out"/libspkey_mobile.*)
strip -o "$out/stripped" "$lib"
stripped=$(stat -c %s "$out/stripped")
rm "$out/stripped"

mkdir -p mobile/results
{
  echo "# The mobile SDK, measured"
  echo
  echo "Written by \`bash mobile/bench.sh\` on $(nproc) cores, $(date -u +%Y-%m-%d). createUser on the wire"
  echo "path (strings in, status and JSON body out), best of three rounds on a"
  echo "fresh store; Kotlin 2.4 on $(java -version 2>&1 | head -1 | tr -d '"'), through JNA."
  echo
  echo "| store | native µs/create | Kotlin µs/create | Kotlin ÷ native speed | target ≥ 0.8× |"
  echo "|---|---|---|---|---|"
  for mode in memory file; do
    n=$(figure "$native" "$mode")
    k=$(figure "$kotlin_out" "$mode")
    ratio=$(awk -v n="$n" -v k="$k" 'BEGIN { printf "%.2f", n / k }')
    verdict=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.8) ? "met" : "missed" }')
    label=$([ "$mode" = memory ] && echo "in memory" || echo "file, durable commits")
    echo "| $label | $n | $k | ${ratio}× | $verdict |"
  done
  echo
  echo "The host library ($(uname -m), release, stripped): $stripped bytes."
  echo "What Android's arm64-v8a build would add to an APK is not measured here:"
  echo "these machines have no Android NDK."
} >mobile/results/bench.md
cat mobile/results/bench.md
