// What the Kotlin tests share: the paths mobile/test.sh passes, the seed's
// body, a real spkey-hub started per test, and a child JVM to kill.
package co.spkey.store

import com.google.gson.JsonParser
import java.io.File
import java.nio.file.Files
import java.nio.file.attribute.PosixFilePermissions
import java.security.MessageDigest
import java.util.concurrent.TimeUnit

const val ID = "550e8400-e29b-41d4-a716-446655440000"
const val OTHER_ID = "6fa459ea-ee8a-3ca4-894e-db77e160355e"

/** A path mobile/test.sh passes as a system property. */
fun given(name: String): String = System.getProperty("spkey.$name") ?: error("run through mobile/test.sh: no spkey.$name")

fun body(id: String, email: String) =
    """{"userId":"$id","email":"$email","firstName":"John Doe","lastName":"John Doe","phoneNumber":"+1-555-0123"}"""

fun userId(n: Int) = "00000000-0000-4000-8000-%012d".format(n)

fun tempDir(): File = Files.createTempDirectory("spkey-kotlin").toFile()

/** The `field`s of an API error body's `details`, in order. */
fun detailFields(json: String): List<String> =
    JsonParser.parseString(json).asJsonObject.getAsJsonArray("details").map { it.asJsonObject["field"].asString }

fun run(vararg command: String): Pair<Int, String> {
    val process = ProcessBuilder(*command).redirectError(ProcessBuilder.Redirect.INHERIT).start()
    val output = process.inputStream.bufferedReader().readText()
    check(process.waitFor(60, TimeUnit.SECONDS)) { "${command.toList()} did not finish" }
    return process.exitValue() to output
}

/** The `spkey` CLI on a store file. */
fun cli(db: File, vararg args: String): Pair<Int, String> = run(given("cli"), "--db", db.path, *args)

/** A real `spkey-hub` on 127.0.0.1 with one organization, `acme`, on redb. */
class Hub : AutoCloseable {
    val dir = tempDir()
    private val config = File(dir, "hub.toml")
    private val process: Process
    val url: String
    val apiKey = "acme-key-for-the-kotlin-tests"

    init {
        val digest = MessageDigest.getInstance("SHA-256").digest(apiKey.toByteArray()).joinToString("") { "%02x".format(it) }
        config.writeText(
            """
            listen = "127.0.0.1:0"
            data_dir = "${File(dir, "data").path}"

            [[organizations]]
            id = "acme"
            api_key_sha256 = ["$digest"]
            jwt_secret = "a-secret-for-the-kotlin-tests-only-32b"
            """.trimIndent(),
        )
        // A config holds secrets: the hub warns when others can read it.
        Files.setPosixFilePermissions(config.toPath(), PosixFilePermissions.fromString("rw-------"))
        process = ProcessBuilder(given("hub"), "--config", config.path)
            .redirectError(File(dir, "hub.log"))
            .start()
        val line = process.inputStream.bufferedReader().readLine() ?: error("the hub did not start: ${File(dir, "hub.log").readText()}")
        check(line.startsWith("listening on ")) { line }
        url = line.removePrefix("listening on ").trim()
    }

    /** A service token (every user of acme), from `spkey-hub token`. */
    fun serviceToken(): String {
        val (status, output) = run(given("hub"), "token", "--config", config.path, "--org", "acme", "--service")
        check(status == 0) { output }
        return output.trim()
    }

    override fun close() {
        process.destroyForcibly().waitFor()
        dir.deleteRecursively()
    }
}

/** A JVM running [main] of [mainClass] with the tests' classpath. */
fun childJvm(mainClass: String, vararg args: String): Process =
    ProcessBuilder(
        File(System.getProperty("java.home"), "bin/java").path,
        "-cp", System.getProperty("java.class.path"),
        "-Djna.library.path=" + System.getProperty("jna.library.path"),
        mainClass, *args,
    ).redirectError(ProcessBuilder.Redirect.INHERIT).start()
