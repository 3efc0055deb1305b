import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// What a rule computes from its series before the comparison: the columns `function`,
/// `window_seconds`, `aggregate` and `aggregate_by`, with PromQL's meaning
/// (`aggregate by (aggregate_by) (function(metric{matchers}[window]))`).
struct RuleExpression: Sendable, Equatable {
    enum Function: String, Sendable, CaseIterable {
        case value, increase, rate, delta
        case avgOverTime = "avg_over_time", minOverTime = "min_over_time", maxOverTime = "max_over_time"
        case absent

        var isWindowed: Bool { ![.value, .absent].contains(self) }
    }

    enum Aggregate: String, Sendable, CaseIterable {
        case sum, avg, min, max, count
    }

    var function = Function.value
    /// Seconds of history a windowed function looks at.
    var window = 0.0
    var aggregate: Aggregate?
    /// The labels the aggregation keeps; empty: one series.
    var aggregateBy: [String] = []

    /// Whether `telltale_alert_value` shows the computed values (not for plain value rules,
    /// whose values are the series' own).
    var isComputed: Bool { function != .value || aggregate != nil }

    /// The PromQL the rule computes, for messages: `sum by (queue) (increase(m{a="b"}[300s]))`.
    func text(_ metric: String, _ matchers: [LabelMatcher]) -> String {
        let selector = metric + (matchers.isEmpty ? "" : "{" + matchers.map(\.description).joined(separator: ",") + "}")
        var text = switch function {
        case .value: selector
        case .absent: "absent(\(selector))"
        default: "\(function.rawValue)(\(selector)[\(ExpositionEncoder.formatNumber(window))s])"
        }
        if let aggregate { text = "\(aggregate.rawValue) by (\(aggregateBy.joined(separator: ", "))) (\(text))" }
        return text
    }

    /// The longest window accepted: a week.
    static let maxWindowSeconds = 7.0 * 86400

    static func parse(function: String?, window: Double?, aggregate: String?, aggregateBy: String?) -> Result<RuleExpression, RuleError> {
        var expression = RuleExpression()
        let name = (function ?? "").trimming(" ").lowercased()
        guard let parsed = name.isEmpty ? .value : Function(rawValue: name) else {
            let names = Function.allCases.map(\.rawValue).joined(separator: ", ")
            return .failure(RuleError("function \"\(name.clipped(40))\" is not one of \(names)"))
        }
        expression.function = parsed
        let seconds = window ?? 0
        if parsed.isWindowed {
            guard seconds.isFinite, seconds >= 1, seconds <= maxWindowSeconds else {
                return .failure(RuleError("\(parsed.rawValue) needs window_seconds from 1 to \(Int(maxWindowSeconds)) (a week)"))
            }
            expression.window = seconds
        } else if seconds != 0 {
            return .failure(RuleError("window_seconds applies only to increase, rate, delta and the *_over_time functions"))
        }
        let aggregateName = (aggregate ?? "").trimming(" ").lowercased()
        if !aggregateName.isEmpty {
            guard let aggregate = Aggregate(rawValue: aggregateName) else {
                return .failure(RuleError("aggregate \"\(aggregateName.clipped(40))\" is not one of sum, avg, min, max, count"))
            }
            guard parsed != .absent else { return .failure(RuleError("absent takes no aggregate")) }
            expression.aggregate = aggregate
        }
        let labels = (aggregateBy ?? "").split(separator: ",").map { $0.trimming(" ") }.filter { !$0.isEmpty }
        guard labels.allSatisfy(MetricNames.isValidLabelName), labels.count <= 32 else {
            return .failure(RuleError("aggregate_by must be label names separated by commas (at most 32)"))
        }
        guard labels.isEmpty || expression.aggregate != nil else { return .failure(RuleError("aggregate_by needs an aggregate")) }
        expression.aggregateBy = labels
        return .success(expression)
    }

    /// The values the rule compares: `series` are the rule's matching series now; windowed
    /// functions read `history` (already holding this evaluation's samples).
    func apply(_ series: [(labels: Labels, value: Double)], history: SampleHistory, ruleMetric: String, matchers: [LabelMatcher],
               now: Double) -> [(labels: Labels, value: Double)] {
        let computed: [(labels: Labels, value: Double)]
        switch function {
        case .value:
            computed = series
        case .absent:
            // 1 when nothing matches, labelled by the equality matchers as PromQL does; 0
            // otherwise, so that the alert resolves when the series come back.
            let labels = Labels(matchers.filter { $0.operation == .equal }.map { ($0.name, $0.value) })
            return [(labels, series.isEmpty ? 1 : 0)]
        default:
            computed = series.compactMap { current in
                history.samples(ruleMetric, current.labels, from: now - window, to: now).flatMap { self.reduce($0, now: now) }
                    .map { (current.labels, $0) }
            }
        }
        guard let aggregate else { return computed }
        return Self.aggregated(computed, aggregate, by: aggregateBy)
    }

    /// A windowed function over the samples of `[now - window, now]`; nil without enough of them.
    func reduce(_ samples: ArraySlice<Sample>, now: Double) -> Double? {
        guard let first = samples.first, let last = samples.last else { return nil }
        switch function {
        case .avgOverTime: return samples.reduce(0) { $0 + $1.value } / Double(samples.count)
        case .minOverTime: return samples.map(\.value).min()
        case .maxOverTime: return samples.map(\.value).max()
        case .increase, .rate, .delta:
            guard samples.count >= 2, last.time > first.time else { return nil }
            let counter = function != .delta
            var change = last.value - first.value
            if counter {
                // A counter that went down was reset: what it had counted is added back.
                for (previous, next) in zip(samples, samples.dropFirst()) where next.value < previous.value { change += previous.value }
            }
            let extrapolated = Self.extrapolate(change, samples, rangeStart: now - window, rangeEnd: now, counter: counter)
            return function == .rate ? extrapolated / window : extrapolated
        case .value, .absent:
            return last.value
        }
    }

    /// Prometheus' `extrapolatedRate`: the change over the samples is stretched to the window's
    /// edges when they are close (within 1.1 average sample intervals), else by half an
    /// interval; a counter is not stretched below zero.
    static func extrapolate(_ change: Double, _ samples: ArraySlice<Sample>, rangeStart: Double, rangeEnd: Double,
                            counter: Bool) -> Double {
        guard let first = samples.first, let last = samples.last else { return change }
        let sampled = last.time - first.time
        let average = sampled / Double(samples.count - 1)
        var toStart = first.time - rangeStart
        let toEnd = rangeEnd - last.time
        if counter, change > 0, first.value >= 0 {
            let toZero = sampled * (first.value / change)
            if toZero < toStart { toStart = toZero }
        }
        let threshold = average * 1.1
        var interval = sampled
        interval += toStart < threshold ? toStart : average / 2
        interval += toEnd < threshold ? toEnd : average / 2
        return change * (interval / sampled)
    }

    static func aggregated(_ series: [(labels: Labels, value: Double)], _ aggregate: Aggregate, by names: [String])
        -> [(labels: Labels, value: Double)]
    {
        var groups: [Labels: [Double]] = [:]
        for item in series {
            let kept = Labels(names.compactMap { name in item.labels[name].map { (name, $0) } })
            groups[kept, default: []].append(item.value)
        }
        return groups.sorted { $0.key < $1.key }.map { labels, values in
            let value = switch aggregate {
            case .sum: values.reduce(0, +)
            case .avg: values.reduce(0, +) / Double(values.count)
            case .min: values.min() ?? .nan
            case .max: values.max() ?? .nan
            case .count: Double(values.count)
            }
            return (labels, value)
        }
    }
}

struct Sample: Sendable, Equatable {
    let time: Double
    let value: Double
}

/// Samples Telltale keeps itself for windowed rules, only for the series such a rule
/// watches: taken at each evaluation (after each collection) when the value changed, or
/// `minimumSpacing` after the last one, and for a window longer than `maxPerSeries` seconds
/// at most one per `window / maxPerSeries`; dropped once older than the longest window that
/// needs them. The total is capped: past `maxSamples` no sample is added (counted).
struct SampleHistory: Sendable {
    private struct Series {
        var samples: [Sample] = []
        /// The longest window a rule reads this series with, as of the last evaluation.
        var window = 0.0
        var lastSeen = 0.0
    }

    /// A series by its metric and full label set: hashed as it is, not spelled out as text per sample.
    private struct Key: Hashable {
        let metric: String
        let labels: Labels
    }

    private var series: [Key: Series] = [:]
    private(set) var count = 0
    /// Series not tracked because the total was at its cap.
    private(set) var refused = 0
    let maxSamples: Int

    init(maxSamples: Int = 1_000_000) { self.maxSamples = maxSamples }

    static let minimumSpacing = 1.0
    /// At most this many samples per series: a long window is sampled more sparsely.
    static let maxPerSeries = 10_000

    /// Records the current values of a windowed rule's series.
    mutating func record(_ metric: String, _ found: [(labels: Labels, value: Double)], window: Double, now: Double) {
        // A window longer than maxPerSeries seconds keeps one sample per this much time.
        let resolution = window / Double(Self.maxPerSeries)
        for item in found where item.value.isFinite {
            let key = Key(metric: metric, labels: item.labels)
            guard var entry = series[key] ?? (count < maxSamples ? Series() : nil) else {
                refused += 1
                continue
            }
            entry.window = entry.lastSeen == now ? max(entry.window, window) : window
            entry.lastSeen = now
            defer { series[key] = entry }
            guard let last = entry.samples.last else {
                append(Sample(time: now, value: item.value), to: &entry)
                continue
            }
            if last.time >= now || last.value == item.value && now - last.time < Self.minimumSpacing { continue }
            if let previous = entry.samples.dropLast().last, now - previous.time < resolution, item.value >= last.value {
                // Inside a long window's resolution the newest value stands for the interval (a
                // drop, which may be a counter reset, is kept as a sample of its own).
                entry.samples[entry.samples.count - 1] = Sample(time: now, value: item.value)
                continue
            }
            append(Sample(time: now, value: item.value), to: &entry)
        }
    }

    /// Appends within the total cap (past it the sample is refused and counted).
    private mutating func append(_ sample: Sample, to entry: inout Series) {
        guard count < maxSamples else {
            refused += 1
            return
        }
        entry.samples.append(sample)
        count += 1
    }

    /// Drops samples no window needs any more, and series no rule read in a window's time.
    mutating func prune(now: Double) {
        var total = 0
        series = series.compactMapValues { entry in
            let keepFrom = now - entry.window - Self.minimumSpacing
            guard entry.lastSeen >= keepFrom else { return nil }
            var kept = entry
            if let stale = kept.samples.firstIndex(where: { $0.time >= keepFrom }), stale > 0 { kept.samples.removeFirst(stale) }
            total += kept.samples.count
            return kept
        }
        count = total
    }

    func samples(_ metric: String, _ labels: Labels, from start: Double, to end: Double) -> ArraySlice<Sample>? {
        guard let samples = series[Key(metric: metric, labels: labels)]?.samples else { return nil }
        let inside = samples.drop { $0.time < start }.prefix { $0.time <= end }
        return inside.isEmpty ? nil : inside
    }
}
