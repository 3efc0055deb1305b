import CompressNIO
import Foundation
import NIOCore
import TelltaleMetrics
import Testing
@testable import Telltale
@testable import TelltaleAlerting
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore
@testable import TelltaleServer

@Suite struct StoreTests {
    func gauge(_ name: String, _ value: Double) -> MetricFamily {
        var builder = FamilyBuilder(MetricDescriptor(name, .gauge, help: "h"))
        builder.set(value)
        return builder.build()
    }

    func gunzip(_ buffer: ByteBuffer) throws -> String {
        var compressed = buffer
        let decompressor = try ZlibDecompressor(algorithm: .gzip)
        var output = ByteBuffer()
        output.reserveCapacity(1 << 20)
        try decompressor.inflate(from: &compressed, to: &output)
        return String(buffer: output)
    }

    /// How many renders the store's own histogram has counted.
    func renderCount(_ store: MetricStore) -> Double? {
        store.snapshot.family(named: MetricStore.renderDuration.name)?.series.first.flatMap { series in
            if case .histogram(let histogram) = series.value { Double(histogram.count) } else { nil }
        }
    }

    @Test func servesSortedFamiliesWithTheScrapeCounterInPlace() async throws {
        let store = MetricStore()
        await store.publish(["b": [gauge("zzz_last", 2)], "a": [gauge("aaa_first", 1)]])
        let scraped = store.scrape(format: .openMetrics, acceptsGzip: false)
        #expect(!scraped.gzipped)
        let body = scraped.joined
        let names = String(buffer: body).split(separator: "\n").filter { $0.hasPrefix("# TYPE") }
        #expect(names == ["# TYPE aaa_first gauge", "# TYPE telltale_render_duration_seconds histogram",
                          "# TYPE telltale_scrapes counter", "# TYPE zzz_last gauge"])
        #expect(String(buffer: body).hasSuffix("# EOF\n"))
    }

    @Test func aPublishThatChangesNothingRendersNothing() async throws {
        let store = MetricStore()
        await store.publish(["a": [gauge("aaa", 1)]])
        await store.publish(["a": [gauge("aaa", 2)]])
        let before = try #require(renderCount(store))
        for _ in 0..<5 { await store.publish(["a": [gauge("aaa", 2)]]) }
        #expect(renderCount(store) == before)
        await store.publish(["a": [gauge("aaa", 3)]])
        #expect(renderCount(store) == before + 1)
    }

    @Test func rendersAreSpacedAndPublishesMeanwhileShareOne() async throws {
        let store = MetricStore(renderSpacing: .seconds(2))
        await store.publish(["a": [gauge("aaa", 1)]])
        let before = try #require(renderCount(store))
        let started = ContinuousClock.now
        await withDiscardingTaskGroup { group in
            for source in ["b", "c", "d"] {
                group.addTask { await store.publish([source: [self.gauge(source + "_value", 1)]]) }
            }
        }
        // A lower bound only: the spacing is counted from the render, which this task may
        // have left well before it published again on a busy machine.
        #expect(started.duration(to: .now) >= .seconds(1))
        #expect(["b_value", "c_value", "d_value"].allSatisfy { store.snapshot.family(named: $0) != nil })
        #expect(renderCount(store) == before + 1)
    }

    @Test func concurrentPublishesEachReturnOnceRenderedAndGetTheirOwnConflicts() async throws {
        let store = MetricStore()
        var counter = FamilyBuilder(MetricDescriptor("shared", .counter, help: "h"))
        counter.add(1)
        await store.publish(["first": [counter.build()]])
        let conflicted = await withTaskGroup(of: (String, Int).self) { group in
            for index in 0..<50 {
                group.addTask {
                    let source = "source\(index)"
                    // Every tenth source defines `shared` as a gauge: a conflict for it alone.
                    let families = [self.gauge("family_\(index)", Double(index))] + (index % 10 == 0 ? [self.gauge("shared", 1)] : [])
                    let conflicts = await store.publish([source: families])
                    #expect(store.snapshot.family(named: "family_\(index)") != nil)
                    #expect(conflicts.allSatisfy { $0.source == source })
                    return (source, conflicts.count)
                }
            }
            return await group.reduce(into: [String]()) { if $1.1 > 0 { $0.append($1.0) } }
        }
        #expect(Set(conflicted) == Set((0..<5).map { "source\($0 * 10)" }))
    }

    @Test(arguments: ExpositionFormat.allCases)
    func gzipBodyIsOneValidMemberEqualToThePlainBody(format: ExpositionFormat) async throws {
        let store = MetricStore()
        let many = (0..<2000).map { gauge("family_\($0 < 1000 ? "a" : "z")_\($0)", Double($0)) }
        await store.publish(["src": many])
        let scraped = store.scrape(format: format, acceptsGzip: true)
        #expect(scraped.gzipped)
        let zipped = scraped.joined
        let plain = store.scrape(format: format, acceptsGzip: false).joined
        // The second scrape counted one more request of this format.
        let expected = String(buffer: plain).replacingOccurrences(
            of: "format=\"\(format.rawValue)\"} 2", with: "format=\"\(format.rawValue)\"} 1")
        #expect(try gunzip(zipped) == expected)
        #expect(zipped.readableBytes < plain.readableBytes / 5)
    }

    /// Families of over `ownChunkBytes` are deflated into chunks of their own: several of them
    /// on both sides of the per-request family, between small ones, make one valid member,
    /// request after request. The chunks are joined once per render, on the first request:
    /// later requests share those two buffers rather than copying the body.
    @Test(arguments: ExpositionFormat.allCases)
    func gzipBodyOfManyCachedChunksStaysValid(format: ExpositionFormat) async throws {
        func large(_ name: String) -> MetricFamily {
            var builder = FamilyBuilder(MetricDescriptor(name, .gauge, help: "h"))
            for index in 0..<1000 { builder.add(Double(index), ["series": "value_\(index)_\(name)"]) }
            return builder.build()
        }
        let store = MetricStore()
        let names = ["a_large", "b_small", "c_large", "d_large", "u_small", "x_large", "y_small", "z_large"]
        await store.publish(["src": names.map { $0.hasSuffix("large") ? large($0) : gauge($0, 1) }])
        func address(_ buffer: ByteBuffer) -> UnsafeRawPointer? { buffer.withUnsafeReadableBytes { $0.baseAddress } }
        var joined: [UnsafeRawPointer?]?
        for request in 1...3 {
            let zipped = store.exposition(format: format, acceptsGzip: true)
            #expect(zipped.gzipped)
            #expect(zipped.parts.count == 4, "request \(request): head, middle, tail, trailer")
            let shared = [address(zipped.parts[0]), address(zipped.parts[2])]
            #expect(shared == (joined ?? shared), "request \(request): the joined chunks are shared, not copied")
            joined = shared
            #expect(try gunzip(zipped.joined) == String(buffer: store.exposition(format: format).joined))
        }
    }

    /// A large family is cached only deflated; the uncompressed body encodes it again, once per
    /// render, so it follows each change and matches the gzip body.
    @Test(arguments: ExpositionFormat.allCases)
    func uncompressedBodyOfALargeFamilyFollowsEachRender(format: ExpositionFormat) async throws {
        func large(_ value: Double) -> MetricFamily {
            var builder = FamilyBuilder(MetricDescriptor("big", .gauge, help: "h"))
            for index in 0..<2000 { builder.set(value, ["series": "value_\(index)"]) }
            return builder.build()
        }
        let store = MetricStore()
        for value in [1.0, 2.0] {
            await store.publish(["src": [large(value)]])
            let plain = String(buffer: store.exposition(format: format).joined)
            #expect(plain.contains("big{series=\"value_1999\"} \(Int(value))\n"))
            #expect(!plain.contains("big{series=\"value_0\"} \(Int(3 - value))\n"))
            #expect(String(buffer: store.exposition(format: format).joined) == plain, "the second request reuses the first's")
            #expect(try gunzip(store.exposition(format: format, acceptsGzip: true).joined) == plain)
        }
    }

    /// A large family's text, once made for an uncompressed body, is kept while the family is
    /// unchanged: a render for another source's change reuses it rather than encoding again.
    @Test func anUnchangedLargeFamilyKeepsItsTextAcrossRenders() async throws {
        var builder = FamilyBuilder(MetricDescriptor("big", .gauge, help: "h"))
        for index in 0..<2000 { builder.set(1, ["series": "value_\(index)"]) }
        let store = MetricStore()
        await store.publish(["large": [builder.build()], "small": [gauge("small", 1)]])
        func largestPart() -> UnsafeRawPointer? {
            store.exposition(format: .text).parts.max { $0.readableBytes < $1.readableBytes }?
                .withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) }
        }
        let before = largestPart()
        await store.publish(["small": [gauge("small", 2)]])
        #expect(String(buffer: store.exposition(format: .text).joined).contains("small 2\n"))
        #expect(largestPart() == before)
    }

    @Test func gzipOfAnEmptyStoreIsValid() throws {
        let store = MetricStore()
        let zipped = store.scrape(format: .text, acceptsGzip: true).joined
        #expect(try gunzip(zipped).contains("telltale_scrapes_total{format=\"text\"} 1"))
    }

    @Test func aSourceThatStopsReportingASeriesLosesIt() async {
        let store = MetricStore()
        await store.publish(["src": [gauge("one", 1), gauge("two", 2)]])
        await store.publish(["src": [gauge("one", 1)]])
        #expect(store.snapshot.families.map(\.name) == ["one", "telltale_render_duration_seconds"])
    }

    @Test func conflictingDefinitionsAreReportedNotFatal() async {
        let store = MetricStore()
        await store.publish(["first": [gauge("same", 1)]])
        var counter = FamilyBuilder(MetricDescriptor("same", .counter, help: "h"))
        counter.add(1)
        let conflicts = await store.publish(["second": [counter.build()]])
        #expect(conflicts == [FamilyMerger.Conflict(family: "same", source: "second")])
        #expect(store.snapshot.family(named: "same")?.descriptor.type == .gauge)
    }
}

@Suite struct IncrementalRenderTests {
    func gauge(_ name: String, _ value: Double, labels: Labels = .none) -> MetricFamily {
        var builder = FamilyBuilder(MetricDescriptor(name, .gauge, help: "h"))
        builder.set(value, labels)
        return builder.build()
    }

    @Test func sourcesSharingAFamilyAreMergedAndUpdatedIndependently() async throws {
        let store = MetricStore()
        await store.publish(["a": [gauge("shared", 1, labels: ["src": "a"])], "b": [gauge("shared", 2, labels: ["src": "b"])]])
        await store.publish(["a": [gauge("shared", 3, labels: ["src": "a"])]])
        let shared = try #require(store.snapshot.family(named: "shared"))
        #expect(shared.series.map(\.value) == [.number(3), .number(2)])
        let text = String(buffer: store.exposition(format: .text).joined)
        #expect(text.contains("shared{src=\"a\"} 3\nshared{src=\"b\"} 2\n"))
        await store.publish(["b": []])
        #expect(store.snapshot.family(named: "shared")?.series.count == 1)
    }

    @Test(arguments: ExpositionFormat.allCases)
    func gzipStaysValidAcrossIncrementalChanges(format: ExpositionFormat) async throws {
        let store = MetricStore()
        for round in 0..<5 {
            await store.publish(["r\(round % 2)": (0..<50).map { gauge("f_\(round % 3)_\($0)", Double(round)) }])
            let zipped = store.exposition(format: format, acceptsGzip: true)
            #expect(zipped.gzipped)
            #expect(try StoreTests().gunzip(zipped.joined) == String(buffer: store.exposition(format: format).joined))
        }
    }
}
