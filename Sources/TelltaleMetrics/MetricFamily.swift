/// The metric types Telltale exposes.
public enum MetricType: String, Sendable {
    case counter
    case gauge
    case histogram
    /// A constant `1` carrying labels (OpenMetrics `info`; a gauge in the 0.0.4 text format).
    case info
}

/// What a family is: everything but its samples.
///
/// `name` is the family name without type suffixes: a counter `foo` is exposed as `foo_total`,
/// an info `foo` as `foo_info`. `unit`, when present, must be the last `_`-separated part of the name.
public struct MetricDescriptor: Hashable, Sendable {
    public let name: String
    public let type: MetricType
    public let help: String
    public let unit: String?

    public init(_ name: String, _ type: MetricType, help: String, unit: String? = nil) {
        self.name = name
        self.type = type
        self.help = help
        self.unit = unit
    }

    /// Why the descriptor cannot be exposed, or nil when it is fine.
    public var problem: String? {
        guard MetricNames.isValidMetricName(name) else { return "invalid metric name \"\(name)\"" }
        for suffix in reservedSuffixes where name.hasSuffix(suffix) {
            return "metric name \"\(name)\" must not end with \(suffix) (Telltale adds type suffixes itself)"
        }
        if let unit, !name.hasSuffix("_" + unit) {
            return "metric name \"\(name)\" must end with its unit \"_\(unit)\""
        }
        return nil
    }

    private var reservedSuffixes: [String] {
        switch type {
        case .counter: ["_total", "_created"]
        case .info: ["_info"]
        case .histogram: ["_bucket", "_count", "_sum", "_created"]
        case .gauge: []
        }
    }
}

/// Cumulative-ready histogram state: per-bucket counts plus the `+Inf` overflow, and the sum.
public struct HistogramValue: Hashable, Sendable {
    /// Finite, strictly increasing upper bounds; `+Inf` is implicit.
    public let upperBounds: [Double]
    /// Non-cumulative counts, one per bound plus one for `+Inf`.
    public private(set) var bucketCounts: [UInt64]
    public private(set) var sum: Double

    public init(upperBounds: [Double]) {
        self.upperBounds = upperBounds
        self.bucketCounts = Array(repeating: 0, count: upperBounds.count + 1)
        self.sum = 0
    }

    public var count: UInt64 { bucketCounts.reduce(0, &+) }

    /// Counts observed at or below each bound, ending with `+Inf` (= `count`).
    public var cumulativeCounts: [UInt64] {
        var running: UInt64 = 0
        return bucketCounts.map { running &+= $0; return running }
    }

    /// Records one observation; NaN is ignored because it has no bucket.
    public mutating func observe(_ value: Double, times: UInt64 = 1) {
        guard !value.isNaN else { return }
        let index = upperBounds.firstIndex { value <= $0 } ?? upperBounds.count
        bucketCounts[index] &+= times
        sum += value * Double(times)
    }
}

/// The value of one series. A histogram is boxed: series are kept by the ten thousand and
/// nearly all are numbers, which then take 24 bytes with their labels instead of 40.
public enum SeriesValue: Hashable, Sendable {
    case number(Double)
    indirect case histogram(HistogramValue)
}

public struct Series: Hashable, Sendable {
    public let labels: Labels
    public let value: SeriesValue

    public init(labels: Labels, value: SeriesValue) {
        self.labels = labels
        self.value = value
    }
}

/// An immutable family: descriptor plus its series sorted by label set.
public struct MetricFamily: Hashable, Sendable {
    public let descriptor: MetricDescriptor
    public let series: [Series]

    public init(_ descriptor: MetricDescriptor, series: [Series]) {
        self.descriptor = descriptor
        // Collectors that produce series in order (one per queue, say) skip the sort.
        let ordered = zip(series, series.dropFirst()).allSatisfy { $0.labels < $1.labels }
        self.series = ordered ? series : series.sorted { $0.labels < $1.labels }
    }

    public var name: String { descriptor.name }
}
