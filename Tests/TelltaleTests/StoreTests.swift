import CompressNIO
import Foundation
import NIOCore
import Testing
import TelltaleMetrics
@testable import Telltale

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

    @Test func servesSortedFamiliesWithTheScrapeCounterInPlace() throws {
        let store = MetricStore()
        store.publish(["b": [gauge("zzz_last", 2)], "a": [gauge("aaa_first", 1)]])
        let scraped = store.scrape(format: .openMetrics, acceptsGzip: false)
        #expect(!scraped.gzipped)
        let body = scraped.joined
        let names = String(buffer: body).split(separator: "\n").filter { $0.hasPrefix("# TYPE") }
        #expect(names == ["# TYPE aaa_first gauge", "# TYPE telltale_render_duration_seconds histogram",
                          "# TYPE telltale_scrapes counter", "# TYPE zzz_last gauge"])
        #expect(String(buffer: body).hasSuffix("# EOF\n"))
    }

    @Test(arguments: ExpositionFormat.allCases)
    func gzipBodyIsOneValidMemberEqualToThePlainBody(format: ExpositionFormat) throws {
        let store = MetricStore()
        let many = (0..<2000).map { gauge("family_\($0 < 1000 ? "a" : "z")_\($0)", Double($0)) }
        store.publish(["src": many])
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

    @Test func gzipOfAnEmptyStoreIsValid() throws {
        let store = MetricStore()
        let zipped = store.scrape(format: .text, acceptsGzip: true).joined
        #expect(try gunzip(zipped).contains("telltale_scrapes_total{format=\"text\"} 1"))
    }

    @Test func aSourceThatStopsReportingASeriesLosesIt() {
        let store = MetricStore()
        store.publish(["src": [gauge("one", 1), gauge("two", 2)]])
        store.publish(["src": [gauge("one", 1)]])
        #expect(store.snapshot.families.map(\.name) == ["one", "telltale_render_duration_seconds"])
    }

    @Test func conflictingDefinitionsAreReportedNotFatal() {
        let store = MetricStore()
        store.publish(["first": [gauge("same", 1)]])
        var counter = FamilyBuilder(MetricDescriptor("same", .counter, help: "h"))
        counter.add(1)
        let conflicts = store.publish(["second": [counter.build()]])
        #expect(conflicts == [FamilyMerger.Conflict(family: "same", source: "second")])
        #expect(store.snapshot.family(named: "same")?.descriptor.type == .gauge)
    }
}
