/// Accumulates the series of one family: counters add, gauges set, histograms observe.
///
/// Builders are plain values owned by one collector run (or kept across runs by a
/// collector that accumulates), and `build()` freezes them into an immutable family.
public struct FamilyBuilder: Sendable {
    public let descriptor: MetricDescriptor
    /// Histogram bucket bounds (ignored for other types).
    public let buckets: [Double]
    private var values: [Labels: SeriesValue] = [:]

    public init(_ descriptor: MetricDescriptor, buckets: [Double] = []) {
        self.descriptor = descriptor
        self.buckets = buckets
    }

    public var isEmpty: Bool { values.isEmpty }
    public var seriesCount: Int { values.count }

    public func contains(_ labels: Labels) -> Bool { values[labels] != nil }

    /// Sets a gauge, an info series (value 1), or a counter read as an absolute total from its source.
    public mutating func set(_ value: Double, _ labels: Labels = .none) {
        values[labels] = .number(value)
    }

    /// Adds to a counter. Negative and NaN increments are ignored: a counter never goes down.
    public mutating func add(_ increment: Double, _ labels: Labels = .none) {
        guard increment >= 0 else { return }
        if case .number(let current) = values[labels] {
            values[labels] = .number(current + increment)
        } else {
            values[labels] = .number(increment)
        }
    }

    /// Records an observation into a histogram series, creating it with this builder's buckets.
    public mutating func observe(_ value: Double, _ labels: Labels = .none, times: UInt64 = 1) {
        var histogram: HistogramValue
        if case .histogram(let existing) = values[labels] {
            histogram = existing
        } else {
            histogram = HistogramValue(upperBounds: buckets)
        }
        histogram.observe(value, times: times)
        values[labels] = .histogram(histogram)
    }

    /// Makes sure a histogram series exists (all zero) so dashboards see it before the first observation.
    public mutating func touchHistogram(_ labels: Labels = .none) {
        if values[labels] == nil { values[labels] = .histogram(HistogramValue(upperBounds: buckets)) }
    }

    /// Drops every series whose labels fail the test (a queue that vanished, say).
    public mutating func retain(where keep: (Labels) -> Bool) {
        values = values.filter { keep($0.key) }
    }

    public func build() -> MetricFamily {
        MetricFamily(descriptor, series: values.map { Series(labels: $0.key, value: $0.value) })
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
