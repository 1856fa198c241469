// The Kotlin SDK: the generated UniFFI bindings (the same package) in
// Kotlin's idiom — AutoCloseable, sealed results, Flow, suspend, a status
// to observe. No rule of its own: every decision is the core's.
package co.spkey.store

import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext

/** What a sync is doing, for an app's UI. */
sealed class SyncStatus {
    /** No sync running; the last one finished (or none ran). */
    object Idle : SyncStatus()

    /** A sync is running. */
    object Syncing : SyncStatus()

    /** The last sync could not reach the hub. */
    data class Offline(val reason: String) : SyncStatus()

    /** The last sync failed otherwise (refused, no token, the store). */
    data class Failed(val reason: String) : SyncStatus()
}

/** A live subscription; [cancel] stops it. */
class Subscription internal constructor(private val handle: SubscriptionHandle) :
    AutoCloseable {
    /** Stops delivery: no event is delivered after this returns. */
    fun cancel() = handle.cancel()

    override fun close() = cancel()
}

/**
 * A store file (the same format as the CLI's and the npm package's), or
 * one in memory. Thread-safe: share one instance across threads.
 *
 * @throws SpkeyException.StoreLocked when another handle or process has
 *   the file; [SpkeyException.NotAStore] for a file that is not a store.
 */
class SpkeyStore private constructor(private val native: NativeStore) : AutoCloseable {
    /** Opens the store at [path], creating it when absent. */
    constructor(path: String) : this(NativeStore.open(path))

    companion object {
        /**
         * Opens the store at [path] shared with other processes (an app and
         * its widget, an app and its sync service): this one writes; the
         * others open it with [openReader]. Each write is synced to the file.
         * A second writer waits 200 ms, then gets [SpkeyException.StoreLocked].
         */
        fun openShared(path: String): SpkeyStore = SpkeyStore(NativeStore.openShared(path))

        /**
         * Opens the store at [path] to read beside the process that writes it
         * with [openShared]: each read sees that writer's latest commit, whole.
         */
        fun openReader(path: String): SpkeyStore = SpkeyStore(NativeStore.openReader(path))

        /** A store in memory, gone when closed. */
        fun inMemory(): SpkeyStore = SpkeyStore(NativeStore.inMemory())
    }

    private val syncStatus = MutableStateFlow<SyncStatus>(SyncStatus.Idle)

    /** What sync is doing now. */
    val status: StateFlow<SyncStatus> = syncStatus.asStateFlow()

    /**
     * `POST /users/{id}/CreateUser` with [body] as the request body: the
     * API's status (201, 200, 400, 409, 413) and exact JSON body.
     */
    fun createUser(id: String, body: String): Answer = native.createUser(id, body)

    /** CreateUser, typed: `when` over [CreateOutcome.Created], `Replayed`, `Rejected`. */
    fun createUser(user: NewUser): CreateOutcome = native.createUserTyped(user)

    /**
     * `POST /users/{id}/UpdateUser` with [body] as the request body (any of
     * `email`, `firstName`, `lastName`, `phoneNumber`; `null` clears an
     * optional field): the API's status (200, 400, 404, 409, 413) and exact
     * JSON body. A changed email is free for another user at once.
     */
    fun updateUser(id: String, body: String): Answer = native.updateUser(id, body)

    /** UpdateUser, typed: `when` over [UpdateOutcome.Updated], `Unchanged`, `Rejected`. */
    fun updateUser(changes: UserChanges): UpdateOutcome = native.updateUserTyped(changes)

    /**
     * `POST /users/{id}/DeleteUser` ([body] `{}` or `{"userId": id}`): the
     * user is erased — its email is free at once, its id taken for good.
     * The API's status (200, a replay 200 again; 400, 404, 413) and exact
     * JSON body. The erased values leave the files before it returns (the
     * store is rewritten; while a subscription holds it, at [close]).
     */
    fun deleteUser(id: String, body: String = "{}"): Answer = native.deleteUser(id, body)

    /** The user as `spkey user` prints it (JSON), or null. */
    fun user(id: String): String? = native.user(id)

    /** The user's current state, typed, or null. */
    fun userRecord(id: String): UserRecord? = native.userTyped(id)

    /** Events from position [from] on (1 is the first), at most [limit]. */
    fun events(from: Long = 1, limit: Int = Int.MAX_VALUE): List<EventRecord> = native.events(from, limit)

    /** The position of the last event; 0 when empty. */
    fun headPosition(): Long = native.headPosition()

    /** Checks every event and index row: the findings, empty when sound. */
    fun verify(): List<String> = native.verify()

    /** The events the hub has not answered yet. */
    fun pending(): List<EventRecord> = native.pending()

    /** The hub's refusals of events made here. */
    fun rejections(): List<EventRecord> = native.rejections()

    /**
     * Calls [listener] with every event after position [from] (0 for all),
     * once each, in order — commands, sync replies, imports — on a thread
     * of the store's. A listener that throws is not unsubscribed and does
     * not harm the store.
     */
    fun subscribe(from: Long = 0, listener: (EventRecord) -> Unit): Subscription =
        Subscription(
            native.subscribe(
                from,
                object : EventListener {
                    override fun onEvent(event: EventRecord) {
                        try {
                            listener(event)
                        } catch (e: Throwable) {
                            // The listener's failure is its own.
                        }
                    }
                },
            ),
        )

    /**
     * Every event after [from] as a cold [Flow]: each collector subscribes,
     * and the subscription ends with the collection. Backpressure holds the
     * store's delivery thread, never a commit.
     */
    fun changes(from: Long = 0): Flow<EventRecord> = callbackFlow {
        val subscription = subscribe(from) { event -> trySendBlocking(event) }
        awaitClose { subscription.cancel() }
    }

    /**
     * Syncs with the hub at [hub]: pushes what is pending, applies the
     * reply, pulls until caught up. [token] is asked before each request.
     * Cancelling the calling coroutine stops the sync before its next
     * request and returns once it has stopped; what was applied stays, and
     * the next sync resumes. Runs on [Dispatchers.IO].
     *
     * @throws SpkeyException.HubUnreachable, [SpkeyException.HubRefused],
     *   [SpkeyException.TokenUnavailable], or the store's kinds.
     */
    suspend fun sync(hub: String, apiKey: String, token: suspend () -> String): SyncSummary = coroutineScope {
        val control = SyncControl()
        syncStatus.value = SyncStatus.Syncing
        val running = async(Dispatchers.IO) {
            try {
                native.sync(hub, apiKey, provider(token), null, control)
            } catch (e: SpkeyException.Cancelled) {
                // Our own cancel, answered: the coroutine's cancellation.
                throw CancellationException("the sync was cancelled")
            }
        }
        try {
            running.await().also { syncStatus.value = SyncStatus.Idle }
        } catch (e: CancellationException) {
            control.cancel()
            syncStatus.value = SyncStatus.Idle
            throw e
        } catch (e: SpkeyException.HubUnreachable) {
            syncStatus.value = SyncStatus.Offline(e.reason)
            throw e
        } catch (e: SpkeyException) {
            syncStatus.value = SyncStatus.Failed(e.message ?: e.toString())
            throw e
        }
    }

    /**
     * One sync for a background scheduler (WorkManager, BGTaskScheduler):
     * done within [deadlineMillis], with whether to retry by the core's
     * rule. Never throws for a sync failure.
     */
    suspend fun syncOnce(hub: String, apiKey: String, deadlineMillis: Long, token: suspend () -> String): SyncAttempt =
        withContext(Dispatchers.IO) { native.syncOnce(hub, apiKey, provider(token), deadlineMillis) }

    private fun provider(token: suspend () -> String) = object : TokenProvider {
        // Called on the sync's IO thread, which may block.
        override fun token(): String = try {
            runBlocking { token() }
        } catch (e: Exception) {
            throw CallbackException.Failed(e.message ?: e.toString())
        }
    }

    /**
     * Closes the store: subscriptions stop and the file is released for the
     * next open. Later calls throw [SpkeyException.StoreClosed]; closing
     * twice is harmless.
     */
    override fun close() = native.closeStore()
}
