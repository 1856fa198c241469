// The Kotlin SDK on the JVM, against the host library through JNA: the
// contract from the shared table, files shared with the CLI, threads, a
// killed JVM, live changes, sync with a real hub, typed errors.
package co.spkey.store

import com.google.gson.JsonParser
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.Test
import java.io.File
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.CountDownLatch
import java.util.concurrent.atomic.AtomicInteger
import kotlin.concurrent.thread
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertIs
import kotlin.test.assertNotNull
import kotlin.test.assertNull
import kotlin.test.assertTrue

class SpkeyStoreTest {
    @Test
    fun everyCaseOfTheSharedContractTableGetsItsStatusAndFieldsAndChangesNothing() {
        val table = JsonParser.parseString(File(given("fixtures"), "contract.json").readText()).asJsonObject
        SpkeyStore.inMemory().use { store ->
            for (command in table.getAsJsonArray("given")) {
                val c = command.asJsonObject
                assertEquals(201, store.createUser(c["id"].asString, c["body"].asString).status)
            }
            var sent = 0
            for (element in table.getAsJsonArray("cases")) {
                val case = element.asJsonObject
                val name = case["name"].asString
                // A Kotlin String cannot hold bytes that are not UTF-8.
                val request = case["body"]?.asString ?: case["bodyOfSpaces"]?.let { " ".repeat(it.asInt) } ?: continue
                val answer = store.createUser(case["id"].asString, request)
                assertEquals(case["status"].asInt, answer.status, "$name: ${answer.body}")
                assertEquals(case["status"].asInt, JsonParser.parseString(answer.body).asJsonObject["code"].asInt, name)
                assertEquals(case.getAsJsonArray("fields").map { it.asString }, detailFields(answer.body), name)
                assertEquals(1L, store.headPosition(), "$name changed the store")
                sent++
            }
            assertEquals(table.getAsJsonArray("cases").size() - 1, sent, "every case but the non-UTF-8 one")
        }
    }

    @Test
    fun aNewUserIs201AReplay200WithTheSameBodyAndTypedResultsCarryTheDetails() {
        SpkeyStore.inMemory().use { store ->
            val created = store.createUser(ID, body(ID, "user@example.com"))
            assertEquals(201, created.status)
            val replayed = store.createUser(ID, body(ID, "user@example.com"))
            assertEquals(200, replayed.status)
            assertEquals(created.body, replayed.body)

            val typed = store.createUser(NewUser(OTHER_ID, "other@example.com", "Ann", null, "+1-555-0199"))
            val event = assertIs<CreateOutcome.Created>(typed).event
            assertEquals(2L, event.position)
            assertEquals("UserCreated", event.eventType)
            assertIs<CreateOutcome.Replayed>(store.createUser(NewUser(OTHER_ID, "other@example.com", "Ann", null, "+1-555-0199")))
            val rejected = store.createUser(NewUser(userId(3), "USER@example.com", null, null, "abc"))
            assertIs<CreateOutcome.Rejected>(rejected)
            assertEquals(400, rejected.status)
            assertEquals(listOf("phoneNumber"), rejected.details.map { it.field })
            assertEquals(listOf("phoneNumber"), detailFields(rejected.body))
            assertTrue(rejected.details.all { it.message.isNotEmpty() })
            val taken = assertIs<CreateOutcome.Rejected>(store.createUser(NewUser(userId(3), "USER@example.com", null, null, null)))
            assertEquals(409, taken.status)
            assertEquals(listOf("email"), taken.details.map { it.field })

            val user = assertNotNull(store.userRecord(OTHER_ID))
            assertEquals("Ann", user.firstName)
            assertNull(user.lastName)
            assertEquals(1L, user.version)
            assertEquals(user.json, store.user(OTHER_ID))
            assertNull(store.user(userId(9)))
            assertEquals(2, store.events().size)
            assertEquals(listOf(2L), store.events(from = 2).map { it.position })
            assertEquals(emptyList(), store.verify())
            assertEquals(2, store.pending().size)
        }
    }

    @Test
    fun anUpdateChangesTheUserFreesTheOldEmailAndAnswersAsTheApiDoes() {
        SpkeyStore.inMemory().use { store ->
            assertEquals(201, store.createUser(ID, body(ID, "user@example.com")).status)
            val updated = store.updateUser(ID, """{"email":"new@example.com","lastName":null}""")
            assertEquals(200, updated.status, updated.body)
            assertEquals("UserUpdated", JsonParser.parseString(updated.body).asJsonObject["event"].asJsonObject["eventType"].asString)
            assertEquals(updated.body, store.updateUser(ID, """{"email":"new@example.com","lastName":null}""").body)
            assertEquals(404, store.updateUser(OTHER_ID, """{"firstName":"X"}""").status)
            assertEquals(listOf("body"), detailFields(store.updateUser(ID, "{}").body))

            // The old email is free: another user takes it; the new one is not.
            assertIs<CreateOutcome.Created>(store.createUser(NewUser(OTHER_ID, "USER@example.com", null, null, null)))
            val taken = assertIs<UpdateOutcome.Rejected>(
                store.updateUser(UserChanges(OTHER_ID, "NEW@example.com", null, null, null, emptyList())),
            )
            assertEquals(409, taken.status)
            assertEquals(listOf("email"), taken.details.map { it.field })
            val renamed = store.updateUser(UserChanges(ID, null, "Jo", null, null, listOf(ClearableField.PHONE_NUMBER)))
            assertEquals(3L, assertIs<UpdateOutcome.Updated>(renamed).event.version)
            assertIs<UpdateOutcome.Unchanged>(store.updateUser(UserChanges(ID, null, "Jo", null, null, emptyList())))

            val user = assertNotNull(store.userRecord(ID))
            assertEquals("new@example.com", user.email)
            assertEquals("Jo", user.firstName)
            assertNull(user.lastName)
            assertNull(user.phoneNumber)
            assertEquals(3L, user.version)
            assertEquals(emptyList(), store.verify())
        }
    }

    @Test
    fun aStoreWrittenByTheCliOpensInKotlinAndBack() {
        val dir = tempDir()
        val db = File(dir, "users.redb")
        val (status, output) = cli(db, "create-user", ID, body(ID, "cli@example.com"))
        assertEquals(0, status, output)
        SpkeyStore(db.path).use { store ->
            assertEquals("cli@example.com", store.userRecord(ID)?.email)
            assertEquals(201, store.createUser(OTHER_ID, body(OTHER_ID, "kotlin@example.com")).status)
        }
        val (found, user) = cli(db, "user", OTHER_ID)
        assertEquals(0, found, user)
        assertEquals("kotlin@example.com", JsonParser.parseString(user).asJsonObject["email"].asString)
        assertEquals(0, cli(db, "verify").first)
        dir.deleteRecursively()
    }

    @Test
    fun theJvmWritesSharedWhileTheCliReadsInALoopAndEveryReadIsAWholePrefix() {
        val dir = tempDir()
        val db = File(dir, "shared.redb")
        SpkeyStore.openShared(db.path).use { store ->
            // Not shared: the JVM holds the file.
            assertEquals(2, cli(db, "events").first)
            val reads = CopyOnWriteArrayList<Int>()
            val reader = thread {
                repeat(30) {
                    val (status, output) = cli(db, "--shared", "events")
                    assertEquals(0, status, output)
                    val positions = output.lines().filter { it.isNotBlank() }
                        .map { JsonParser.parseString(it).asJsonObject["position"].asInt }
                    // A whole prefix of the log: 1, 2, … with no gap.
                    assertEquals((1..positions.size).toList(), positions)
                    reads.add(positions.size)
                }
            }
            var written = 0
            while (reader.isAlive && written < 5_000) {
                assertEquals(201, store.createUser(userId(written), body(userId(written), "p$written@example.com")).status)
                written++
            }
            reader.join()
            assertEquals(30, reads.size, "a read failed")
            assertEquals(reads.sorted(), reads.toList(), "a read went back")
            assertTrue(reads.zipWithNext().any { (a, b) -> a < b }, "no read came while the JVM wrote: $reads")
            assertEquals(written, cli(db, "--shared", "events").second.lines().count { it.isNotBlank() })
            // A second writer is turned away, never let in beside the first.
            assertFailsWith<SpkeyException.StoreLocked> { SpkeyStore.openShared(db.path) }
            SpkeyStore.openReader(db.path).use { reader ->
                assertEquals(written.toLong(), reader.headPosition())
                assertFailsWith<SpkeyException.ReadOnlyStore> {
                    reader.createUser(ID, body(ID, "no@example.com"))
                }
            }
        }
        assertEquals(0, cli(db, "verify").first)
        dir.deleteRecursively()
    }

    @Test
    fun anErasedUserLeavesTheFilesBeforeDeleteUserReturns() {
        val dir = tempDir()
        val db = File(dir, "erase.redb")
        val email = "Yseult.Kotlin-Erasure@example.org"
        val files = { dir.listFiles()!!.joinToString("") { String(it.readBytes(), Charsets.ISO_8859_1) } }
        SpkeyStore(db.path).use { store ->
            assertEquals(201, store.createUser(ID, body(ID, email)).status)
            assertEquals(201, store.createUser(OTHER_ID, body(OTHER_ID, "kept.kotlin@example.org")).status)
            assertTrue(files().contains(email), "the search cannot see")
            val erased = store.deleteUser(ID)
            assertEquals(200, erased.status, erased.body)
            // The store is still open: deleteUser rewrote it before returning.
            val open = files()
            assertTrue(!open.contains(email) && !open.contains(email.lowercase()), "the erased email is in a file")
            assertEquals(200, store.deleteUser(ID, "{\"userId\":\"$ID\"}").status)
            assertEquals(404, store.deleteUser(userId(99)).status)
            assertEquals(409, store.createUser(ID, body(ID, "again@example.org")).status)
            assertEquals(true, JsonParser.parseString(store.user(ID)).asJsonObject["erased"].asBoolean)
        }
        val everything = files()
        assertTrue(!everything.contains(email) && !everything.contains(email.lowercase()), "the erased email is in a file")
        assertTrue(everything.contains("kept.kotlin@example.org"), "the search cannot see")
        dir.deleteRecursively()
    }

    @Test
    fun eightThreadsCreatingAtOnceGetOneOwnerPerEmailAndLoseNothing() {
        val dir = tempDir()
        SpkeyStore(File(dir, "users.redb").path).use { store ->
            val owners = ConcurrentHashMap<Int, MutableList<String>>()
            val start = CountDownLatch(1)
            val threads = (0 until 8).map { t ->
                thread {
                    start.await()
                    for (n in 0 until 40) {
                        // Each email is tried by all eight threads.
                        val id = userId(t * 1000 + n)
                        val answer = store.createUser(id, body(id, "shared$n@example.com"))
                        when (answer.status) {
                            201 -> owners.computeIfAbsent(n) { CopyOnWriteArrayList() }.add(id)
                            409 -> assertEquals(listOf("email"), detailFields(answer.body))
                            else -> error(answer.body)
                        }
                        // And each thread has users of its own.
                        val own = userId(100_000 + t * 1000 + n)
                        assertEquals(201, store.createUser(own, body(own, "own$t-$n@example.com")).status)
                    }
                }
            }
            start.countDown()
            threads.forEach { it.join() }
            assertEquals((0 until 40).toSet(), owners.keys)
            assertTrue(owners.values.all { it.size == 1 }, "an email with two owners: $owners")
            assertEquals(40L + 8 * 40, store.headPosition())
            assertEquals(emptyList(), store.verify())
        }
        dir.deleteRecursively()
    }

    @Test
    fun aJvmKilledWhileCreatingLosesNoAcknowledgedUser() {
        val dir = tempDir()
        val db = File(dir, "users.redb")
        val acknowledged = mutableListOf<String>()
        val rounds = if (System.getenv("SPKEY_LONG") != null) 100 else 20
        for (round in 0 until rounds) {
            val child = childJvm(CreateLoop::class.java.name, db.path, (round * 10_000).toString())
            val lines = child.inputStream.bufferedReader()
            // Killed at a different point each round.
            repeat(5 + (round * 7) % 40) { acknowledged += lines.readLine() ?: error("the loop ended early") }
            child.destroyForcibly().waitFor() // SIGKILL
            SpkeyStore(db.path).use { store ->
                assertEquals(emptyList(), store.verify(), "round $round")
                for (id in acknowledged) assertNotNull(store.userRecord(id), "round $round lost $id")
            }
        }
        dir.deleteRecursively()
    }

    @Test
    fun liveChangesArriveOnceInOrderThroughAFlowAndAThrowingListenerHurtsNothing() = runBlocking {
        SpkeyStore.inMemory().use { store ->
            assertEquals(201, store.createUser(ID, body(ID, "before@example.com")).status)
            val calls = AtomicInteger()
            val throwing = store.subscribe(0) {
                calls.incrementAndGet()
                throw IllegalStateException("a listener's bug")
            }
            val collected = async(Dispatchers.IO) { store.changes(0).take(6).toList() }
            for (n in 1..5) {
                val id = userId(n)
                assertEquals(201, store.createUser(id, body(id, "live$n@example.com")).status)
            }
            val events = withTimeout(10_000) { collected.await() }
            assertEquals((1L..6L).toList(), events.map { it.position })
            withTimeout(10_000) { while (calls.get() < 6) delay(10) }
            throwing.cancel()
            assertEquals(6, calls.get(), "the throwing listener was called once per event")
            assertEquals(201, store.createUser(userId(7), body(userId(7), "after@example.com")).status)
            assertEquals(7L, store.headPosition())
            assertEquals(6, calls.get(), "no event after cancel")
        }
    }

    @Test
    fun theTypedErrorsNameTheirKinds() {
        val dir = tempDir()
        val db = File(dir, "users.redb")
        SpkeyStore(db.path).use {
            assertFailsWith<SpkeyException.StoreLocked> { SpkeyStore(db.path) }
        }
        val garbage = File(dir, "notes.txt").apply { writeText("not a store, just words ".repeat(100)) }
        assertFailsWith<SpkeyException.NotAStore> { SpkeyStore(garbage.path) }
        assertEquals("not a store, just words ".repeat(100), garbage.readText(), "left untouched")
        val closed = SpkeyStore.inMemory()
        closed.close()
        closed.close()
        assertFailsWith<SpkeyException.StoreClosed> { closed.headPosition() }
        SpkeyStore.inMemory().use { store ->
            assertFailsWith<SpkeyException.InvalidArgument> { store.user("not-a-uuid") }
            assertFailsWith<SpkeyException.InvalidArgument> { store.events(from = -1) }
        }
        dir.deleteRecursively()
    }

    @Test
    fun syncWithARealHubRejectionsTokensCancellationAndStatus() = runBlocking {
        Hub().use { hub ->
            val token = hub.serviceToken()
            SpkeyStore.inMemory().use { phone ->
                SpkeyStore.inMemory().use { tablet ->
                    // Offline on two devices; the same email on both.
                    assertEquals(201, phone.createUser(ID, body(ID, "ann@example.com")).status)
                    assertEquals(201, phone.createUser(userId(2), body(userId(2), "bob@example.com")).status)
                    assertEquals(201, tablet.createUser(OTHER_ID, body(OTHER_ID, "ANN@example.com")).status)
                    val seen = CopyOnWriteArrayList<EventRecord>()
                    val watching = launch(Dispatchers.IO) { tablet.changes(0).collect { seen += it } }

                    // A token the hub refuses first (as an expired one is):
                    // the provider is asked again, and the sync goes through.
                    val asked = AtomicInteger()
                    val summary = phone.sync(hub.url, hub.apiKey) {
                        if (asked.incrementAndGet() == 1) "$token-expired" else token
                    }
                    assertEquals(2L, summary.pushed)
                    assertEquals(2L, summary.accepted)
                    assertTrue(asked.get() >= 3, "asked ${asked.get()} times")
                    assertIs<SyncStatus.Idle>(phone.status.value)

                    val refused = tablet.sync(hub.url, hub.apiKey) { token }
                    assertEquals(1L, refused.rejected)
                    assertEquals(2L, refused.pulled)
                    val rejection = tablet.rejections().single()
                    assertEquals(OTHER_ID, rejection.aggregateId)
                    assertTrue(rejection.json.contains("\"field\":\"email\""), rejection.json)
                    assertEquals(emptyList(), tablet.pending())
                    // The Flow saw every event once, in order: the offline
                    // create, the rejection, the two pulled.
                    withTimeout(10_000) { while (seen.size < 4) delay(10) }
                    watching.cancel()
                    assertEquals((1L..4L).toList(), seen.map { it.position })

                    // Cancelled mid-sync: stops before its next request; the
                    // next sync finishes the job.
                    for (n in 10 until 15) assertEquals(201, phone.createUser(userId(n), body(userId(n), "c$n@example.com")).status)
                    val inProvider = CompletableDeferred<Unit>()
                    val cancelled = async {
                        phone.sync(hub.url, hub.apiKey) {
                            inProvider.complete(Unit)
                            delay(500)
                            token
                        }
                    }
                    inProvider.await()
                    cancelled.cancel()
                    assertFailsWith<CancellationException> { cancelled.await() }
                    val resumed = phone.sync(hub.url, hub.apiKey) { token }
                    assertEquals(emptyList(), phone.pending())
                    assertEquals(emptyList(), phone.verify())
                    assertEquals(7L, resumed.cursor)

                    // Offline, and refused: the status says which, and a
                    // background sync says whether to retry.
                    val offline = SpkeyStore.inMemory()
                    assertFailsWith<SpkeyException.HubUnreachable> { offline.sync("http://127.0.0.1:9", hub.apiKey) { token } }
                    assertIs<SyncStatus.Offline>(offline.status.value)
                    val refusedKey = assertFailsWith<SpkeyException.HubRefused> { offline.sync(hub.url, "wrong-key") { token } }
                    assertEquals(403, refusedKey.status)
                    assertIs<SyncStatus.Failed>(offline.status.value)
                    assertTrue(offline.syncOnce("http://127.0.0.1:9", hub.apiKey, 5_000) { token }.retry)
                    val noRetry = offline.syncOnce(hub.url, "wrong-key", 5_000) { token }
                    assertEquals(false, noRetry.retry)
                    assertNotNull(noRetry.failure)
                    val done = offline.syncOnce(hub.url, hub.apiKey, 5_000) { token }
                    assertEquals(7L, done.summary?.pulled)
                    offline.close()
                }
            }
        }
    }
}
