#!/usr/bin/env bash
# The classpath the Kotlin SDK compiles and runs against: the Kotlin
# standard library and coroutines (from the pinned npm kotlin-compiler) and
# JNA (Debian's libjna-java, or JNA_JAR). With `test`, JUnit 4 and
# kotlin-test too.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lib=$here/node_modules/kotlin-compiler/lib
jna=${JNA_JAR:-/usr/share/java/jna.jar}
paths=("$lib/kotlin-stdlib.jar" "$lib/kotlinx-coroutines-core-jvm.jar" "$jna")
if [ "${1:-}" = test ]; then
  paths+=("$lib/kotlin-test.jar" "$lib/kotlin-test-junit.jar"
    /usr/share/java/junit4.jar /usr/share/java/hamcrest-core.jar)
fi
(IFS=:; echo "${paths[*]}")
