// The Kotlin SDK's createUser on the wire path, with the same ids, bodies
// and rounds as the native baseline (mobile/benches/native.rs). Printed,
// never asserted: mobile/bench.sh writes the comparison.
package co.spkey.store

import java.nio.file.Files

object Bench {
    /** Best of three rounds of [n] creates on a fresh store: µs per create. */
    private fun bestOfThree(n: Int, open: () -> SpkeyStore): Double =
        (0 until 3).minOf {
            open().use { store ->
                val started = System.nanoTime()
                for (i in 0 until n) {
                    val id = "00000000-0000-4000-8000-%012d".format(i)
                    val body = """{"userId":"$id","email":"bench$i@example.com","firstName":"John Doe","lastName":"John Doe","phoneNumber":"+1-555-0123"}"""
                    val answer = store.createUser(id, body)
                    check(answer.status == 201) { answer.body }
                }
                (System.nanoTime() - started) / 1000.0 / n
            }
        }

    @JvmStatic
    fun main(args: Array<String>) {
        val full = args.contains("--full")
        val (memoryN, fileN) = if (full) 20_000 to 2_000 else 100 to 20
        // The JIT warms up on a round that is not counted.
        bestOfThree(memoryN / 4) { SpkeyStore.inMemory() }
        val memory = bestOfThree(memoryN) { SpkeyStore.inMemory() }
        val dir = Files.createTempDirectory("spkey-bench").toFile()
        var round = 0
        val file = bestOfThree(fileN) { SpkeyStore(dir.resolve("bench${round++}.redb").path) }
        dir.deleteRecursively()
        println("kotlin memory %.2f us/create (%d creates)".format(memory, memoryN))
        println("kotlin file %.2f us/create (%d creates, durable)".format(file, fileN))
    }
}
