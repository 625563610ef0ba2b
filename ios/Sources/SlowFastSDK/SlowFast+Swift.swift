// The Swift-facing layer over the generated bindings (SlowFastSDK.swift): Foundation types
// (URL, Date) and argument labels in Swift style. Records (`Config`, `Feed`, `FeedItem`,
// `ScoredItem`, `SyncReport`) are already value types (structs with `let` fields) and
// every fallible call `throws` a `SlowFastError`.
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

    /// The server's top `count` (1...500) candidates with their priors.
    func fetchFeed(count: Int = 100) throws -> Feed {
        try fetchFeed(k: UInt32(clamping: count))
    }

    /// Verifies the bundle directory at `url` and installs it atomically.
    func installBundle(at url: URL) throws {
        try installBundle(dir: url.path)
    }
}

extension Date {
    var unixMilliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded()) }
}
