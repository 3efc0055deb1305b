import CGlibcExtras
import CompressNIO
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
/// Sources publish immutable families. Rendering happens on a thread of its own, off the
/// event loops, and is incremental: each family's encoded and deflated bytes are cached, and
/// a publish re-encodes only the families whose content changed before concatenating the
/// cached pieces. A scrape only hands out cached buffers around the per-request
/// `telltale_scrapes_total` family, so it never waits on a backend or a render.
public final class MetricStore: Sendable {
    /// The only family rendered per request; everything else comes from the cache.
    package static let scrapes = MetricDescriptor(
        "telltale_scrapes", .counter, help: "Requests to /metrics answered, by exposition format.")
    package static let renderDuration = MetricDescriptor(
        "telltale_render_duration_seconds", .histogram,
        help: "Time to merge, encode and compress the exposition after a change (up to the previous render).",
        unit: "seconds")
    package static let renderBuckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
    package static let storeSource = "store"
    /// Families at least this large (encoded) keep their own cached deflated chunk; smaller
    /// neighbours are deflated together at each render, which compresses far better than
    /// one chunk per small family and costs little.
    package static let ownChunkBytes = 16 << 10

    /// One family, merged from every source that has it, encoded for both formats: the sample
    /// lines, which both share, once; the few metadata lines once per format.
    fileprivate struct CachedFamily: Sendable {
        /// A large family's sample lines are kept deflated, in a chunk of their own (the gzip
        /// body Prometheus asks for shares it); their text is encoded again from `family` only
        /// once an uncompressed body needs it, then kept while the family is unchanged. Smaller
        /// families keep them plain, as their neighbours' are deflated together at each render.
        enum Samples: Sendable {
            case plain(ByteBuffer)
            case deflated(DeflatedChunk, text: MadeOnce<ByteBuffer>)
        }

        let family: MetricFamily
        let conflicts: [FamilyMerger.Conflict]
        let textMetadata: ByteBuffer
        let openMetricsMetadata: ByteBuffer
        let samples: Samples

        func metadata(_ format: ExpositionFormat) -> ByteBuffer {
            format == .text ? textMetadata : openMetricsMetadata
        }

        var plainSamples: ByteBuffer {
            switch samples {
            case .plain(let bytes): bytes
            case .deflated(_, let text): text.get { ByteBuffer(bytes: ExpositionEncoder.samples(family)) }
            }
        }
    }

    private struct RenderState {
        /// Source → family name → family.
        var sources: [String: [String: MetricFamily]] = [:]
        /// Publication order of sources, so that the first publisher of a family wins conflicts.
        var sourceOrder: [String] = []
        var cache: [String: CachedFamily] = [:]
        var renderDurations = FamilyBuilder(MetricStore.renderDuration, buckets: MetricStore.renderBuckets)
    }

    /// One per render, reused for each of its chunks (reset, not reallocated), then freed: its
    /// 270 KB of state need not stay resident between renders. Nil if zlib could not start.
    private static func makeCompressor() -> ZlibCompressor? {
        try? ZlibCompressor(algorithm: .deflate, configuration: .init(compressionLevel: .compressionLevel3))
    }

    private let renderState = Mutex(RenderState())
    private let current: Mutex<Rendered>
    private let renderThread = BlockingThreads(count: 1)
    private let textScrapes = Atomic<UInt64>(0)
    private let openMetricsScrapes = Atomic<UInt64>(0)
    /// When the last uncompressed body was asked for, in whole seconds since `origin`.
    private let plainAskedAt = Atomic<Int64>(Int64.min)
    private let origin = ContinuousClock.now
    /// How long after an uncompressed request renders keep making the large families' text.
    private static let plainKeptFor: Int64 = 300

    private var secondsSinceOrigin: Int64 { (ContinuousClock.now - origin).components.seconds }

    private var plainRecently: Bool {
        let askedAt = plainAskedAt.load(ordering: .relaxed)
        return askedAt != Int64.min && secondsSinceOrigin - askedAt < Self.plainKeptFor
    }

    /// The least time from the end of one render to the start of the next. Fifty providers
    /// polled each second made about 40 renders a second, each holding a core for about 2 ms:
    /// scrapes waited for a core behind them (BENCHMARKS.md, "The whole product"). Publishes
    /// that arrive meanwhile are merged into the next render: a change reaches `/metrics` at
    /// most this much plus two renders later (one arriving just after a render took the
    /// queue waits for it, then the spacing); a publish after a quiet spell renders at once.
    private let renderSpacing: Duration

    public init(renderSpacing: Duration = .milliseconds(250)) {
        self.renderSpacing = renderSpacing
        current = Mutex(Self.assemble([:], compressor: Self.makeCompressor()))
    }

    /// Publishes waiting for the render thread, merged: under load (fifty providers each
    /// publishing every second) one render covers them all instead of one render each.
    private struct Queue {
        /// Sources in the order they were published, each with its latest families.
        var sources: [String] = []
        var families: [String: [MetricFamily]] = [:]
        var waiters: [(sources: Set<String>, continuation: CheckedContinuation<[FamilyMerger.Conflict], Never>)] = []
        var draining = false
    }

    private let queue = Mutex(Queue())

    /// Replaces the families of the given sources and re-renders what changed; nothing when
    /// nothing did. Returns once a render includes them, with the updated sources' families
    /// that clashed with another source's definition.
    @discardableResult
    public func publish(_ updates: [String: [MetricFamily]]) async -> [FamilyMerger.Conflict] {
        await withCheckedContinuation { continuation in
            let startDraining = queue.withLock { queue in
                for (source, families) in updates.sorted(by: { $0.key < $1.key }) {
                    if queue.families.updateValue(families, forKey: source) == nil { queue.sources.append(source) }
                }
                queue.waiters.append((Set(updates.keys), continuation))
                defer { queue.draining = true }
                return !queue.draining
            }
            guard startDraining else { return }
            Task {
                if await renderThread.run({ self.drain() }) == nil { self.drain(rendering: false) }
            }
        }
    }

    /// Renders what is queued until nothing is, resuming each publisher after its render. After
    /// a render the thread waits out `renderSpacing` before it looks at the queue again (it
    /// has no other work): publishes meanwhile join the next render, and one after the loop
    /// ended is already that far from the last render.
    private func drain(rendering: Bool = true) {
        var renderEnded: ContinuousClock.Instant?
        while true {
            if let renderEnded { BlockingThreads.pause(ContinuousClock.now.duration(to: renderEnded + renderSpacing)) }
            let (updates, waiters) = queue.withLock { queue in
                defer { queue = Queue(draining: !queue.waiters.isEmpty) }
                return (queue.sources.map { ($0, queue.families[$0] ?? []) }, queue.waiters)
            }
            guard !waiters.isEmpty else { return }
            let (conflicts, rendered) = rendering ? render(updates) : ([], false)
            if rendered { renderEnded = .now }
            for waiter in waiters {
                waiter.continuation.resume(returning: conflicts.filter { waiter.sources.contains($0.source) })
            }
        }
    }

    /// Renders the updates, returning the updated sources' conflicts and whether anything changed.
    private func render(_ updates: [(source: String, families: [MetricFamily])]) -> ([FamilyMerger.Conflict], rendered: Bool) {
        let clock = ContinuousClock()
        let started = clock.now
        let (rendered, conflicts) = renderState.withLock { state -> (Rendered?, [FamilyMerger.Conflict]) in
            var dirty: Set<String> = []
            for (source, families) in updates {
                let new = Dictionary(families.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
                let old = state.sources.updateValue(new, forKey: source)
                if old == nil { state.sourceOrder.append(source) }
                let names = Set(new.keys).union(old.map { Set($0.keys) } ?? [])
                for name in names where new[name] != old?[name] { dirty.insert(name) }
            }
            // A publish that changes nothing (alerting's idle state, say) renders nothing; the
            // render durations, which change with every render, wait for the next real change.
            let updated = Set(updates.map(\.source))
            guard !dirty.isEmpty else { return (nil, Self.conflicts(of: updated, in: state)) }
            state.renderDurations.touchHistogram()
            let durations = state.renderDurations.build()
            if state.sources[Self.storeSource] == nil { state.sourceOrder.append(Self.storeSource) }
            state.sources[Self.storeSource] = [durations.name: durations]
            dirty.insert(durations.name)
            let compressor = Self.makeCompressor()
            for name in dirty { state.cache[name] = Self.cachedFamily(name, state, compressor: compressor) }
            return (Self.assemble(state.cache, compressor: compressor), Self.conflicts(of: updated, in: state))
        }
        guard let rendered else { return (conflicts, false) }
        // The previous render is released after the lock, which every scrape takes: its large
        // buffers are unmapped then.
        var replaced = rendered
        current.withLock { swap(&$0, &replaced) }
        // Uncompressed scrapes seen lately: their text is made here rather than on an event loop.
        if plainRecently { rendered.plain.prepare() }
        // A render frees the previous exposition's buffers; hand that memory back to the
        // system rather than keeping the high-water mark resident.
        malloc_trim(0)
        let elapsed = (clock.now - started).seconds
        renderState.withLock { $0.renderDurations.observe(elapsed) }
        return (conflicts, true)
    }

    /// The conflicts of the updated sources' families with another source's definition.
    private static func conflicts(of updated: Set<String>, in state: RenderState) -> [FamilyMerger.Conflict] {
        state.cache.values.flatMap(\.conflicts).filter { updated.contains($0.source) }
    }

    /// Merges and encodes one family from every source that has it; nil when none has.
    private static func cachedFamily(_ name: String, _ state: RenderState, compressor: ZlibCompressor?) -> CachedFamily? {
        let contributions = state.sourceOrder.compactMap { source in state.sources[source]?[name].map { (source, [$0]) } }
        guard !contributions.isEmpty, name != scrapes.name else { return nil }
        // A family from a single source is used as it is: no merge, no copy.
        var family = contributions[0].1[0]
        var conflicts: [FamilyMerger.Conflict] = []
        if contributions.count > 1 {
            let merged = FamilyMerger.merge(contributions)
            family = merged.families.first ?? family
            conflicts = merged.conflicts
        }
        let encoded = ByteBuffer(bytes: ExpositionEncoder.samples(family))
        var samples = CachedFamily.Samples.plain(encoded)
        // If zlib fails, the family stays plain and is deflated with its neighbours.
        if encoded.readableBytes >= ownChunkBytes, let compressor, let chunk = try? DeflatedChunk(encoded, compressor: compressor) {
            samples = .deflated(chunk, text: MadeOnce())
        }
        return CachedFamily(family: family, conflicts: conflicts,
                            textMetadata: ByteBuffer(bytes: ExpositionEncoder.metadata(family, format: .text)),
                            openMetricsMetadata: ByteBuffer(bytes: ExpositionEncoder.metadata(family, format: .openMetrics)),
                            samples: samples)
    }

    /// Lays out the cached families in name order, split around the per-request family.
    private static func assemble(_ cache: [String: CachedFamily], compressor: ZlibCompressor?) -> Rendered {
        let sorted = cache.sorted { $0.key < $1.key }.map(\.value)
        let split = sorted.firstIndex { $0.family.name > scrapes.name } ?? sorted.count
        /// Large families' cached sample chunks, with the runs of small pieces between them
        /// (every family's metadata, small families' samples) deflated now.
        func chunks(_ families: ArraySlice<CachedFamily>, _ format: ExpositionFormat) -> [DeflatedChunk]? {
            guard let compressor else { return nil }
            var result: [DeflatedChunk] = []
            var run = ByteBuffer()
            func flushRun() -> Bool {
                guard run.readableBytes > 0 else { return true }
                guard let chunk = try? DeflatedChunk(run, compressor: compressor) else { return false }
                result.append(chunk)
                run.clear()
                return true
            }
            for family in families {
                run.writeImmutableBuffer(family.metadata(format))
                switch family.samples {
                case .deflated(let chunk, _):
                    guard flushRun() else { return nil }
                    result.append(chunk)
                case .plain(let bytes):
                    run.writeImmutableBuffer(bytes)
                }
            }
            return flushRun() ? result : nil
        }
        // A missing chunk (zlib failed) means serving uncompressed.
        func gzip(_ format: ExpositionFormat) -> GzipSegments? {
            chunks(sorted[..<split], format).flatMap { head in
                chunks(sorted[split...], format).map { GzipSegments(head: head, tail: $0, trailer: Array(format.trailer.utf8)) }
            }
        }
        return Rendered(families: sorted, split: split, textGzip: gzip(.text), openMetricsGzip: gzip(.openMetrics))
    }

    public var snapshot: MetricSnapshot {
        current.withLock { $0.snapshot }
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
        let rendered = current.withLock { $0 }
        let middle = ExpositionEncoder.encode([scrapesFamily()], format: format)
        if acceptsGzip, let gzip = rendered.gzip(format) {
            return ScrapeBody(parts: gzip.body(middle: middle, allocator: allocator), gzipped: true)
        }
        plainAskedAt.store(secondsSinceOrigin, ordering: .relaxed)
        let plain = rendered.plain.parts(format)
        return ScrapeBody(parts: plain.head + [ByteBuffer(bytes: middle)] + plain.tail, gzipped: false)
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

/// Both formats of one snapshot, split around the per-request family.
private struct Rendered: Sendable {
    let snapshot: MetricSnapshot
    /// Nil only if zlib could not compress (out of memory): the plain body is served then.
    let textGzip: GzipSegments?
    let openMetricsGzip: GzipSegments?
    let plain: PlainBodies

    init(families: [MetricStore.CachedFamily], split: Int, textGzip: GzipSegments?, openMetricsGzip: GzipSegments?) {
        snapshot = MetricSnapshot(families: families.map(\.family))
        (self.textGzip, self.openMetricsGzip) = (textGzip, openMetricsGzip)
        plain = PlainBodies(families: families, split: split)
    }

    func gzip(_ format: ExpositionFormat) -> GzipSegments? {
        format == .text ? textGzip : openMetricsGzip
    }
}

/// The uncompressed bodies of one render, laid out on the first uncompressed request for them
/// (Prometheus asks for gzip, so most renders never need them) from the families' cached
/// pieces, a large family's text made then if no render made it before.
private final class PlainBodies: Sendable {
    /// The encoded families before and after the per-request one, in name order: the cached
    /// buffers themselves, shared rather than concatenated, as a response is written from them
    /// directly (writev).
    struct Parts: Sendable {
        let head: [ByteBuffer]
        let tail: [ByteBuffer]
    }

    private let families: [MetricStore.CachedFamily]
    private let split: Int
    private let text = MadeOnce<Parts>()
    private let openMetrics = MadeOnce<Parts>()

    init(families: [MetricStore.CachedFamily], split: Int) {
        (self.families, self.split) = (families, split)
    }

    func parts(_ format: ExpositionFormat) -> Parts {
        (format == .text ? text : openMetrics).get { laidOut(format) }
    }

    private func laidOut(_ format: ExpositionFormat) -> Parts {
        let samples = families.map(\.plainSamples)
        func pieces(_ range: Range<Int>) -> [ByteBuffer] {
            range.flatMap { [families[$0].metadata(format), samples[$0]] }.filter { $0.readableBytes > 0 }
        }
        return Parts(head: pieces(0..<split), tail: pieces(split..<families.count) + [ByteBuffer(string: format.trailer)])
    }

    /// Makes the large families' text ahead of the requests (on the render thread).
    func prepare() {
        for family in families { _ = family.plainSamples }
    }
}
