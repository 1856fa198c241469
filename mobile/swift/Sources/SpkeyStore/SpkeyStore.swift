// The Swift SDK: the generated bindings (SpkeyStoreFFI) in Swift's idiom —
// async sync with task cancellation, an AsyncStream of changes. No rule of
// its own. Untested here: these machines have no Swift toolchain.
import Foundation
@_exported import SpkeyStoreFFI

/// A store file (the same format as every other target), or one in memory.
public final class SpkeyStore: @unchecked Sendable {
    private let native: NativeStore

    /// Opens the store at `path`, creating it when absent.
    public init(path: String) throws { native = try NativeStore.open(path: path) }

    private init(native: NativeStore) { self.native = native }

    /// A store in memory, gone when closed.
    public static func inMemory() throws -> SpkeyStore { SpkeyStore(native: try NativeStore.inMemory()) }

    /// `POST /users/{id}/CreateUser`: the API's status and exact JSON body.
    public func createUser(id: String, body: String) throws -> Answer { try native.createUser(id: id, body: body) }

    /// CreateUser, typed: `.created`, `.replayed`, `.rejected(status:details:body:)`.
    public func createUser(_ user: NewUser) throws -> CreateOutcome { try native.createUserTyped(user: user) }

    /// The user as JSON, or nil.
    public func user(id: String) throws -> String? { try native.user(id: id) }

    /// The user's current state, typed, or nil.
    public func userRecord(id: String) throws -> UserRecord? { try native.userTyped(id: id) }

    /// Events from position `from` on, at most `limit`.
    public func events(from: Int64 = 1, limit: Int32 = .max) throws -> [EventRecord] {
        try native.events(from: from, limit: limit)
    }

    /// The position of the last event; 0 when empty.
    public func headPosition() throws -> Int64 { try native.headPosition() }

    /// The findings of a full check; empty when sound.
    public func verify() throws -> [String] { try native.verify() }

    /// The events the hub has not answered yet.
    public func pending() throws -> [EventRecord] { try native.pending() }

    /// The hub's refusals of events made here.
    public func rejections() throws -> [EventRecord] { try native.rejections() }

    /// Every event after `from`, once each, in order, until the stream's
    /// consumer stops.
    public func changes(from: Int64 = 0) throws -> AsyncStream<EventRecord> {
        let (stream, continuation) = AsyncStream<EventRecord>.makeStream()
        let handle = try native.subscribe(from: from, listener: Forward(continuation))
        continuation.onTermination = { _ in handle.cancel() }
        return stream
    }

    /// Syncs with the hub: push, apply the reply, pull until caught up.
    /// Cancelling the task stops the sync before its next request.
    public func sync(hub: String, apiKey: String, token: @escaping @Sendable () throws -> String) async throws -> SyncSummary {
        let control = SyncControl()
        let native = self.native
        return try await withTaskCancellationHandler {
            try await Task.detached {
                try native.sync(hub: hub, apiKey: apiKey, token: Tokens(token), deadlineMs: nil, control: control)
            }.value
        } onCancel: {
            control.cancel()
        }
    }

    /// One sync within `deadlineMs` for BGTaskScheduler; `retry` says
    /// whether to schedule it again.
    public func syncOnce(hub: String, apiKey: String, deadlineMs: Int64, token: @escaping @Sendable () throws -> String) throws -> SyncAttempt {
        try native.syncOnce(hub: hub, apiKey: apiKey, token: Tokens(token), deadlineMs: deadlineMs)
    }

    /// Closes the store; later calls throw `SpkeyError.StoreClosed`.
    public func close() throws { try native.closeStore() }
}

private final class Forward: EventListener, @unchecked Sendable {
    private let continuation: AsyncStream<EventRecord>.Continuation
    init(_ continuation: AsyncStream<EventRecord>.Continuation) { self.continuation = continuation }
    func onEvent(event: EventRecord) throws { continuation.yield(event) }
}

private final class Tokens: TokenProvider, @unchecked Sendable {
    private let get: @Sendable () throws -> String
    init(_ get: @escaping @Sendable () throws -> String) { self.get = get }
    func token() throws -> String {
        do { return try get() } catch { throw CallbackError.Failed(reason: "\(error)") }
    }
}
