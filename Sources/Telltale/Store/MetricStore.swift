import NIOCore
import Synchronization
import TelltaleMetrics

/// The merged families of every source at one moment: what `/metrics` serves and what the
/// alert evaluator reads.
public struct MetricSnapshot: Sendable {
    public let families: [MetricFamily]

    public func family(named name: String) -> MetricFamily? {
        families.first { $0.name == name }
    }
}

/// A response body in parts: the cached buffers are shared between requests, not copied.
public struct ScrapeBody: Sendable {
    public let parts: [ByteBuffer]
    public let gzipped: Bool

    /// The parts as one buffer (for `telltale once` and tests).
    public var joined: ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(parts.reduce(0) { $0 + $1.readableBytes })
        for part in parts { buffer.writeImmutableBuffer(part) }
        return buffer
    }
}

/// Holds each source's latest families and the exposition rendered from them.
///
/// Sources publish immutable families; every publish renders both formats (and their gzip
/// segments) once, off the request path. A scrape only copies cached bytes around the
/// per-request `telltale_scrapes_total` family, so it never waits on a backend or a render.
public final class MetricStore: Sendable {
    /// The only family rendered per request; everything else comes from the cache.
    static let scrapes = MetricDescriptor(
        "telltale_scrapes", .counter, help: "Requests to /metrics answered, by exposition format.")
    static let renderDuration = MetricDescriptor(
        "telltale_render_duration_seconds", .histogram,
        help: "Time to merge, encode and compress the exposition after a change (up to the previous render).",
        unit: "seconds")
    static let renderBuckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]

    private struct State {
        var sources: [String: [MetricFamily]] = [:]
        /// Publication order of sources, so that the first publisher of a family wins conflicts.
        var sourceOrder: [String] = []
        var version: UInt64 = 0
        var renderedVersion: UInt64 = 0
        var rendered: Rendered
        /// Durations of earlier renders: a render cannot include its own duration.
        var renderDurations = FamilyBuilder(MetricStore.renderDuration, buckets: MetricStore.renderBuckets)
    }

    private let state: Mutex<State>
    private let textScrapes = Atomic<UInt64>(0)
    private let openMetricsScrapes = Atomic<UInt64>(0)

    public init() {
        // An empty exposition renders without I/O and cannot fail to compress.
        state = Mutex(State(rendered: Rendered(families: [])))
    }

    /// Replaces the families of the given sources and re-renders.
    /// Returns the families that clashed with another source's definition of the same name.
    @discardableResult
    public func publish(_ updates: [String: [MetricFamily]]) -> [FamilyMerger.Conflict] {
        let clock = ContinuousClock()
        let started = clock.now
        let (version, sources) = state.withLock { state in
            for (source, families) in updates {
                if state.sources.updateValue(families, forKey: source) == nil { state.sourceOrder.append(source) }
            }
            state.version += 1
            state.renderDurations.touchHistogram()
            return (state.version, state.sourceOrder.map { ($0, state.sources[$0] ?? []) } + [("store", [state.renderDurations.build()])])
        }
        let merged = FamilyMerger.merge(sources)
        let families = merged.families.filter { $0.name != Self.scrapes.name }
        let rendered = Rendered(families: families)
        let elapsed = (clock.now - started).seconds
        state.withLock { state in
            state.renderDurations.observe(elapsed)
            if version > state.renderedVersion {
                state.rendered = rendered
                state.renderedVersion = version
            }
        }
        return merged.conflicts
    }

    public var snapshot: MetricSnapshot {
        state.withLock { $0.rendered.snapshot }
    }

    /// The body of one `/metrics` response, counting the scrape first. `gzipped` tells whether
    /// the body was compressed (it is not if compression was refused or had failed at render).
    public func scrape(format: ExpositionFormat, acceptsGzip: Bool, allocator: ByteBufferAllocator = .init()) -> ScrapeBody {
        switch format {
        case .text: textScrapes.add(1, ordering: .relaxed)
        case .openMetrics: openMetricsScrapes.add(1, ordering: .relaxed)
        }
        return exposition(format: format, acceptsGzip: acceptsGzip, allocator: allocator)
    }

    /// The current exposition without counting it as a scrape (for `telltale once`).
    public func exposition(format: ExpositionFormat, acceptsGzip: Bool = false, allocator: ByteBufferAllocator = .init())
        -> ScrapeBody
    {
        let rendered = state.withLock { $0.rendered }
        let middle = ExpositionEncoder.encode([scrapesFamily()], format: format)
        let parts = rendered.parts(format)
        if acceptsGzip, let gzip = parts.gzip {
            return ScrapeBody(parts: gzip.body(middle: middle, allocator: allocator), gzipped: true)
        }
        return ScrapeBody(parts: [parts.head, ByteBuffer(bytes: middle), parts.tail], gzipped: false)
    }

    private func scrapesFamily() -> MetricFamily {
        MetricFamily(Self.scrapes, series: [
            Series(labels: ["format": ExpositionFormat.text.rawValue],
                   value: .number(Double(textScrapes.load(ordering: .relaxed)))),
            Series(labels: ["format": ExpositionFormat.openMetrics.rawValue],
                   value: .number(Double(openMetricsScrapes.load(ordering: .relaxed)))),
        ])
    }
}

/// Both formats rendered from one snapshot, split around the per-request family.
private struct Rendered: Sendable {
    struct Parts: Sendable {
        let head: ByteBuffer
        let tail: ByteBuffer
        /// Nil only if zlib could not compress (out of memory): the plain body is served then.
        let gzip: GzipSegments?
    }

    let snapshot: MetricSnapshot
    let text: Parts
    let openMetrics: Parts

    init(families: [MetricFamily]) {
        snapshot = MetricSnapshot(families: families)
        let splitIndex = families.firstIndex { $0.name > MetricStore.scrapes.name } ?? families.count
        let before = Array(families[..<splitIndex])
        let after = Array(families[splitIndex...])
        text = Self.parts(before, after, format: .text)
        openMetrics = Self.parts(before, after, format: .openMetrics)
    }

    func parts(_ format: ExpositionFormat) -> Parts {
        format == .text ? text : openMetrics
    }

    private static func parts(_ before: [MetricFamily], _ after: [MetricFamily], format: ExpositionFormat) -> Parts {
        let head = ExpositionEncoder.encode(before, format: format)
        let tail = ExpositionEncoder.encode(after, format: format) + Array(format.trailer.utf8)
        return Parts(head: ByteBuffer(bytes: head), tail: ByteBuffer(bytes: tail),
                     gzip: try? GzipSegments(head: head, tail: tail))
    }
}
