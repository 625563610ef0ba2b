// Mirrors android/src/test/kotlin/dev/slowfast/SlowFastTest.kt (run with `swift test` on a Mac
// after build-xcframework.sh). Swift releases the engine with its last reference (ARC), so the
// Kotlin close-then-use test becomes release-then-reopen here.
import Foundation
import XCTest
@testable import SlowFastSDK

final class SlowFastTests: XCTestCase {
    /// core/tests/data/bundle, found from this file's location in the repository.
    static let bundle = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("core/tests/data/bundle")

    static var manifest: [String: Any] {
        let data = try! Data(contentsOf: bundle.appendingPathComponent("manifest.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }
    static var modelVersion: String { manifest["model_version"] as! String }
    static var dim: Int { manifest["dim"] as! Int }

    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// Port 9 on loopback: nothing listens, so every request fails fast with a network error.
    func open(server: String = "http://127.0.0.1:9", bundle: URL? = SlowFastTests.bundle) throws -> SlowFast {
        try SlowFast(config: .defaults(dataDirectory: dir, server: URL(string: server)!, token: "token",
                                       user: "alice", shippedBundle: bundle))
    }

    /// The formula of the Kotlin `Fixtures.feed` and the Rust `rerank` example.
    func feed(_ n: Int, version: String = SlowFastTests.modelVersion, dim: Int = SlowFastTests.dim) -> Feed {
        func v(_ i: Int, _ k: Int) -> [Float] {
            (0..<dim).map { j in Float(0.1 * sin(0.37 * Double(i) + 0.11 * Double(j) + 1.3 * Double(k))) }
        }
        return Feed(modelVersion: version, items: (0..<n).map { i in
            FeedItem(item: "item-\(i)", embedding: v(i, 0), rT: v(i, 1), rN: v(i, 2),
                     slowScore: Float(n - i) / Float(n))
        })
    }

    func testOpensWithTheShippedBundleAndReranksTheWholeFeedBestFirst() throws {
        let sf = try open()
        XCTAssertEqual(sf.modelVersion(), Self.modelVersion)
        XCTAssertEqual(sf.negMemory(), [Float](repeating: 0, count: Self.dim))
        let f = feed(20)
        let ranked = try sf.rerank(f)
        XCTAssertEqual(Set(ranked.map(\.item)), Set(f.items.map(\.item)))
        XCTAssertEqual(ranked.map(\.score), ranked.map(\.score).sorted(by: >))
    }

    func testExposuresMoveTheNegativeMemoryAndClicksChangeTheScores() throws {
        let sf = try open()
        let f = feed(10)
        let before = Dictionary(uniqueKeysWithValues: try sf.rerank(f).map { ($0.item, $0.score) })
        try sf.recordExposure(f.items[0].item, at: Date(timeIntervalSince1970: 1))
        XCTAssertNotEqual(sf.negMemory().map(abs).max(), 0)
        try sf.recordClick(f.items[1].item, at: Date(timeIntervalSince1970: 2))
        let after = try sf.rerank(f)
        XCTAssert(after.contains { abs($0.score - before[$0.item]!) > 1e-6 })
        XCTAssertEqual(try sf.pendingUploads(), 2)
    }

    func testEventsSurviveReleasingAndReopening() throws {
        var sf: SlowFast? = try open()
        _ = try sf!.rerank(feed(5))
        try sf!.recordExposure("item-0")
        try sf!.recordClick("item-1")
        let memory = sf!.negMemory()
        sf = nil
        let reopened = try open(bundle: nil)
        XCTAssertEqual(reopened.modelVersion(), Self.modelVersion)
        XCTAssertEqual(try reopened.pendingUploads(), 2)
        XCTAssertEqual(reopened.negMemory(), memory)
    }

    func testBadArgumentsThrowInvalidArgument() throws {
        let sf = try open()
        XCTAssertThrowsError(try sf.recordClick("")) { guard case SlowFastError.InvalidArgument = $0 else { return XCTFail("\($0)") } }
        XCTAssertThrowsError(try sf.rerank(feed(3, dim: Self.dim + 1))) { guard case SlowFastError.InvalidArgument = $0 else { return XCTFail("\($0)") } }
        XCTAssertEqual(try sf.pendingUploads(), 0)
    }

    func testScoringWithoutABundleThrowsNoModel() throws {
        let sf = try open(bundle: nil)
        try sf.recordClick("item-1")
        XCTAssertThrowsError(try sf.rerank(feed(3))) { guard case SlowFastError.NoModel = $0 else { return XCTFail("\($0)") } }
    }

    func testAFeedForAnotherModelThrowsVersionMismatch() throws {
        let sf = try open()
        XCTAssertThrowsError(try sf.rerank(feed(3, version: "other"))) { guard case SlowFastError.VersionMismatch = $0 else { return XCTFail("\($0)") } }
    }

    func testACorruptBundleThrowsBundleAndKeepsTheInstalledModel() throws {
        let sf = try open()
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.copyItem(at: Self.bundle, to: copy)
        defer { try? FileManager.default.removeItem(at: copy) }
        let fast = try FileHandle(forWritingTo: copy.appendingPathComponent("fast.onnx"))
        fast.seekToEndOfFile()
        fast.write(Data([0]))
        fast.closeFile()
        XCTAssertThrowsError(try sf.installBundle(at: copy)) { guard case SlowFastError.Bundle = $0 else { return XCTFail("\($0)") } }
        XCTAssertEqual(sf.modelVersion(), Self.modelVersion)
    }

    func testAnUnreachableServerThrowsNetwork() async throws {
        let sf = try open()
        do {
            _ = try await sf.fetchFeed(count: 10)
            XCTFail("an unreachable server answered")
        } catch SlowFastError.Network {
        }
    }

    /// The README's "Use it from an app" Swift snippet between the `README` markers, verbatim
    /// (scripts/lib/check_snippets.py compares them); mirrors android's ReadmeTest offline.
    func appCode(appSupport: URL, serverURL: URL, token: String, userId: String, shippedBundleURL: URL) async throws {
        // README: begin
        let sf = try SlowFast(config: .defaults(dataDirectory: appSupport.appendingPathComponent("slowfast"),
                                                server: serverURL, token: token, user: userId,
                                                shippedBundle: shippedBundleURL))
        let feed: Feed
        do {
            feed = try await sf.fetchFeed(count: 100) // runs off this thread; cancelled with the task
        } catch SlowFastError.Network {
            guard let kept = try sf.lastFeed() else { return } // offline: the last feed, kept with its priors
            feed = kept
        }
        let ranked: [ScoredItem]
        do {
            ranked = try sf.rerank(feed) // one call into Rust for the whole feed, best first
        } catch SlowFastError.VersionMismatch {
            _ = try await sf.updateModel() // the server retrained: install its new bundle, then fetch for it
            ranked = try sf.rerank(try await sf.fetchFeed(count: 100))
        }
        for item in ranked.prefix(10) { try sf.recordExposure(item.item) } // moves r̂2 on the device
        try sf.recordClick(ranked[0].item)
        do {
            _ = try await sf.syncNow() // uploads r̂2 and the events when a threshold is reached
        } catch SlowFastError.Network {
            // kept on the device; a later syncNow uploads them
        }
        // README: end
    }

    func testOfflineOnFirstLaunchTheReadmeSnippetRecordsNothing() async throws {
        try await appCode(appSupport: dir, serverURL: URL(string: "http://127.0.0.1:9")!, token: "token",
                          userId: "alice", shippedBundleURL: Self.bundle)
        let sf = try SlowFast(config: .defaults(dataDirectory: dir.appendingPathComponent("slowfast"),
                                                server: URL(string: "http://127.0.0.1:9")!, token: "token",
                                                user: "alice"))
        XCTAssertEqual(try sf.pendingUploads(), 0)
        XCTAssertNil(try sf.lastFeed())
    }

    func testADamagedStoreThrowsStoreCorrupt() throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(repeating: 0x5a, count: 8192).write(to: dir.appendingPathComponent("slowfast.sqlite3"))
        XCTAssertThrowsError(try open()) { guard case SlowFastError.StoreCorrupt = $0 else { return XCTFail("\($0)") } }
    }
}
