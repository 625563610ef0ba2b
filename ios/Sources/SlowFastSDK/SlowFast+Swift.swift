// The Swift-facing layer over the generated bindings (SlowFastSDK.swift): Foundation types
// (URL, Date, TimeInterval), argument labels in Swift style, and `async` network calls that run
// off the caller's thread and stop when their task is cancelled. Records (`Config`, `Feed`,
// `FeedItem`, `ScoredItem`, `SyncReport`) are value types (structs with `let` fields) and every
// fallible call `throws` a `SlowFastError` whose cases carry their fields (`.Server(status:
// code: text:)`, `.RateLimited(retryAfterMs: text:)`, `.VersionMismatch(feedVersion:
// deviceVersion: text:)`, …).
import Foundation

public extension Config {
    /// The runtime's defaults for a store in `dataDirectory`, a sync `server`, and `user`,
    /// optionally installing the bundle shipped in the app at `shippedBundle`; `durability`
    /// `.powerLoss` makes recorded events survive a power cut too (one storage sync each).
    static func defaults(dataDirectory: URL, server: URL, token: String, user: String,
                         shippedBundle: URL? = nil,
                         durability: Durability = .process) -> Config {
        let c = defaultConfig(dataDir: dataDirectory.path, serverUrl: server.absoluteString,
                              token: token, user: user)
        return Config(dataDir: c.dataDir, serverUrl: c.serverUrl, token: c.token, user: c.user,
                      clickWindow: c.clickWindow, exposureWindow: c.exposureWindow,
                      syncIntervalMs: c.syncIntervalMs, syncMaxEvents: c.syncMaxEvents,
                      embeddingCache: c.embeddingCache, initialBundle: shippedBundle?.path,
                      httpTimeoutMs: c.httpTimeoutMs, durability: durability)
    }
}

public extension SlowFast {
    /// Records a click on `item` at `date` (default now). Durable when it returns.
    func recordClick(_ item: String, at date: Date = Date()) throws {
        try recordClick(item: item, tsMs: date.unixMilliseconds)
    }

    /// Records that `item` was shown at `date`; advances `r̂2` by one `GRU_n` step (eq. 5).
    func recordExposure(_ item: String, at date: Date = Date()) throws {
        try recordExposure(item: item, tsMs: date.unixMilliseconds)
    }

    /// Scores the whole feed in one call into the SDK; best first.
    func rerank(_ feed: Feed) throws -> [ScoredItem] {
        try rerank(feed: feed)
    }

    /// The server's top `count` (1...500) candidates with their priors, kept as `lastFeed()`.
    /// Runs off the caller's thread; cancelling the task cancels the request.
    func fetchFeed(count: Int = 100) async throws -> Feed {
        try await offThread { try self.fetchFeed(k: Int32(clamping: count), cancel: $0) }
    }

    /// Uploads `r̂2` and pending events when a time or count threshold says so. Runs off the
    /// caller's thread; cancelling the task cancels the upload (the next sync resends it).
    func syncNow() async throws -> SyncReport {
        try await offThread { try self.syncNow(cancel: $0) }
    }

    /// Downloads, verifies and installs a newer bundle; `true` when the model changed.
    func updateModel() async throws -> Bool {
        try await offThread { try self.updateModel(cancel: $0) }
    }

    /// Verifies the bundle directory at `url` and installs it atomically; `true` when the
    /// model changed.
    @discardableResult
    func installBundle(at url: URL) throws -> Bool {
        try installBundle(dir: url.path)
    }

    /// Runs a blocking network call on a global queue, cancelled with the calling task.
    private func offThread<T>(_ call: @escaping (Cancellation) throws -> T) async throws -> T {
        let cancel = Cancellation()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                DispatchQueue.global(qos: .utility).async {
                    continuation.resume(with: Result { try call(cancel) })
                }
            }
        } onCancel: {
            cancel.cancel()
        }
    }
}

extension Date {
    var unixMilliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded()) }
}
