import Testing
@testable import TelltaleMetrics

/// Regressions of the hardening issue: a 60 KB `Accept` header cost about 6 ms of event-loop
/// time per request. Only the first `maxHeaderBytes` and `maxRanges` elements count now.
@Suite struct NegotiationBoundsTests {
    /// `count` filler ranges that match nothing, before or after `wanted`.
    static func header(_ wanted: String, after count: Int) -> String {
        (Array(repeating: "x/y;q=0.1", count: count) + [wanted]).joined(separator: ",")
    }

    @Test func aHugeAcceptHeaderIsReadFromItsStart() {
        let accept = "application/openmetrics-text;version=1.0.0;q=0.9," + Array(repeating: "x/y;q=0.1", count: 6000).joined(separator: ",")
        #expect(accept.utf8.count > 60_000)
        #expect(ContentNegotiation.format(accept: accept) == .openMetrics)
        #expect(ContentNegotiation.mediaRanges(accept).count == ContentNegotiation.maxRanges)
    }

    @Test func rangesBeyondTheBoundAreIgnored() {
        let within = Self.header("application/openmetrics-text", after: ContentNegotiation.maxRanges - 1)
        #expect(ContentNegotiation.format(accept: within) == .openMetrics)
        let beyond = Self.header("application/openmetrics-text", after: ContentNegotiation.maxRanges)
        #expect(ContentNegotiation.format(accept: beyond) == .text)
    }

    @Test func bytesBeyondTheBoundAreIgnored() {
        let padding = String(repeating: " ", count: ContentNegotiation.maxHeaderBytes)
        #expect(ContentNegotiation.format(accept: padding + "application/openmetrics-text") == .text)
        #expect(!ContentNegotiation.acceptsGzip(padding + "gzip"))
        #expect(ContentNegotiation.acceptsGzip(Self.header("gzip", after: 3)))
        #expect(!ContentNegotiation.acceptsGzip(Self.header("gzip", after: ContentNegotiation.maxRanges)))
    }

    @Test func aCutThroughAMultibyteCharacterIsHarmless() {
        // "é" is two bytes; the cut falls between them.
        let header = String(repeating: "a", count: ContentNegotiation.maxHeaderBytes - 1) + "é,gzip"
        #expect(ContentNegotiation.mediaRanges(header).count == 1)
        #expect(!ContentNegotiation.acceptsGzip(header))
    }

    @Test func aHeaderOfOnlySeparatorsGivesNothing() {
        #expect(ContentNegotiation.mediaRanges(String(repeating: ",", count: 100_000)).isEmpty)
        #expect(ContentNegotiation.format(accept: String(repeating: ";", count: 100_000)) == .text)
    }
}
