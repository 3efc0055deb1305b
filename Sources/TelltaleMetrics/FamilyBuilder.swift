/// Accumulates the series of one family: counters add, gauges set, histograms observe.
///
/// Builders are plain values owned by one collector run (or kept across runs by a
/// collector that accumulates), and `build()` freezes them into an immutable family.
///
/// Small builders keep their series in label order as they come, so that one kept across
/// runs (a series per collector, updated and built at every run) builds without a sort.
/// Larger ones keep the order series first appeared in: sources mostly produce series in some
/// order (query rows, queues by name), and the family's sort finds those ascending runs and
/// merges them, ten thousand rows of a query in a few passes rather than the fourteen a
/// shuffled order takes (a dictionary's order was such a shuffle).
public struct FamilyBuilder: Sendable {
    public let descriptor: MetricDescriptor
    /// Histogram bucket bounds (ignored for other types).
    public let buckets: [Double]
    /// In the order they first appeared.
    private var series: [Series] = []
    /// Where each label set is in `series`.
    private var positions: [Labels: Int] = [:]
    /// Positions in `series` in label order, while there are at most `orderedUpTo` series.
    private var order: [Int]? = []
    private static let orderedUpTo = 256

    public init(_ descriptor: MetricDescriptor, buckets: [Double] = []) {
        self.descriptor = descriptor
        self.buckets = buckets
    }

    public var isEmpty: Bool { series.isEmpty }
    public var seriesCount: Int { series.count }

    public func contains(_ labels: Labels) -> Bool { positions[labels] != nil }

    /// Sets a gauge, an info series (value 1), or a counter read as an absolute total from its source.
    public mutating func set(_ value: Double, _ labels: Labels = .none) {
        update(labels) { _ in .number(value) }
    }

    /// Adds to a counter. Negative and NaN increments are ignored: a counter never goes down.
    public mutating func add(_ increment: Double, _ labels: Labels = .none) {
        guard increment >= 0 else { return }
        update(labels) { current in
            if case .number(let current) = current { .number(current + increment) } else { .number(increment) }
        }
    }

    /// Records an observation into a histogram series, creating it with this builder's buckets.
    public mutating func observe(_ value: Double, _ labels: Labels = .none, times: UInt64 = 1) {
        update(labels) { [buckets] current in
            var histogram = if case .histogram(let existing) = current { existing } else { HistogramValue(upperBounds: buckets) }
            histogram.observe(value, times: times)
            return .histogram(histogram)
        }
    }

    /// Makes sure a histogram series exists (all zero) so dashboards see it before the first observation.
    public mutating func touchHistogram(_ labels: Labels = .none) {
        if positions[labels] == nil { update(labels) { [buckets] _ in .histogram(HistogramValue(upperBounds: buckets)) } }
    }

    /// Drops every series whose labels fail the test (a queue that vanished, say).
    public mutating func retain(where keep: (Labels) -> Bool) {
        series = series.filter { keep($0.labels) }
        positions = Dictionary(uniqueKeysWithValues: series.enumerated().map { ($1.labels, $0) })
        order = series.count > Self.orderedUpTo ? nil : series.indices.sorted { series[$0].labels < series[$1].labels }
    }

    public func build() -> MetricFamily {
        MetricFamily(descriptor, series: order.map { $0.map { series[$0] } } ?? series)
    }

    /// Replaces the value of `labels` (nil: none yet) with `change`'s, appending a new series.
    private mutating func update(_ labels: Labels, _ change: (SeriesValue?) -> SeriesValue) {
        if let position = positions[labels] {
            series[position] = Series(labels: series[position].labels, value: change(series[position].value))
        } else {
            positions[labels] = series.count
            series.append(Series(labels: labels, value: change(nil)))
            keepOrder(ofNew: series.count - 1)
        }
    }

    /// Places the new series' position in `order`, or stops keeping it past `orderedUpTo`.
    private mutating func keepOrder(ofNew position: Int) {
        guard order != nil else { return }
        guard series.count <= Self.orderedUpTo else { return order = nil }
        let labels = series[position].labels
        var (low, high) = (0, order!.count)
        while low < high {
            let middle = (low + high) / 2
            if series[order![middle]].labels < labels { low = middle + 1 } else { high = middle }
        }
        order!.insert(position, at: low)
    }
}

public enum Buckets {
    /// The client libraries' default latency buckets, in seconds.
    public static let defaultSeconds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// Why a bucket list cannot be used, or nil: bounds must be finite and strictly increasing.
    public static func problem(_ bounds: [Double]) -> String? {
        if bounds.isEmpty { return "at least one bucket bound is required" }
        if bounds.contains(where: { !$0.isFinite }) { return "bucket bounds must be finite (+Inf is implicit)" }
        if zip(bounds, bounds.dropFirst()).contains(where: { $0 >= $1 }) {
            return "bucket bounds must be strictly increasing"
        }
        return nil
    }
}
