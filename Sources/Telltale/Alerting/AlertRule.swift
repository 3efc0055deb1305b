import TelltaleMetrics

/// A label matcher of a rule's selector: `=`, `!=`, `=~`, `!~` (regexes match whole values,
/// as in PromQL).
struct LabelMatcher: Sendable, CustomStringConvertible {
    enum Operation: String, Sendable {
        case equal = "=", notEqual = "!=", matches = "=~", notMatches = "!~"
    }

    let name: String
    let operation: Operation
    let value: String

    init?(name: String, operation: Operation, value: String) {
        if operation == .matches || operation == .notMatches {
            guard (try? Regex(value)) != nil else { return nil }
        }
        self.name = name
        self.operation = operation
        self.value = value
    }

    func matches(_ labels: Labels) -> Bool {
        let actual = labels[name] ?? ""
        switch operation {
        case .equal: return actual == value
        case .notEqual: return actual != value
        case .matches, .notMatches:
            // Compiled here rather than stored: Regex is not Sendable.
            let whole = (try? Regex(value)).map { actual.wholeMatch(of: $0) != nil } ?? false
            return operation == .matches ? whole : !whole
        }
    }

    var description: String { "\(name)\(operation.rawValue)\"\(value)\"" }

    /// Parses `a="x",b!~"y.*"`. Nil with a reason on malformed input.
    static func parseList(_ text: String) -> Result<[LabelMatcher], RuleError> {
        var matchers: [LabelMatcher] = []
        var rest = Substring(text.trimming(" "))
        while !rest.isEmpty {
            guard let opStart = rest.firstIndex(where: { "=!".contains($0) }) else {
                return .failure(RuleError("matcher \"\(rest)\" has no operator"))
            }
            let name = rest[..<opStart].trimming(" ")
            var afterName = rest[opStart...]
            let operation: Operation
            if let found = [Operation.matches, .notMatches, .notEqual, .equal].first(where: { afterName.hasPrefix($0.rawValue) }) {
                operation = found
                afterName = afterName.dropFirst(found.rawValue.count)
            } else {
                return .failure(RuleError("bad operator in matcher \"\(rest)\""))
            }
            afterName = afterName.drop { $0 == " " }
            guard afterName.first == "\"" else { return .failure(RuleError("matcher value for \(name) must be quoted")) }
            var value = ""
            var index = afterName.index(after: afterName.startIndex)
            var closed = false
            while index < afterName.endIndex {
                let character = afterName[index]
                if character == "\\", afterName.index(after: index) < afterName.endIndex {
                    index = afterName.index(after: index)
                    value.append(afterName[index] == "n" ? "\n" : afterName[index])
                } else if character == "\"" {
                    closed = true
                    break
                } else {
                    value.append(character)
                }
                index = afterName.index(after: index)
            }
            guard closed, MetricNames.isValidLabelName(name) else {
                return .failure(RuleError("malformed matcher for \"\(name)\""))
            }
            guard let matcher = LabelMatcher(name: name, operation: operation, value: value) else {
                return .failure(RuleError("invalid regular expression for \(name)"))
            }
            matchers.append(matcher)
            rest = afterName[afterName.index(after: index)...].drop { $0 == " " || $0 == "," }
        }
        return .success(matchers)
    }
}

struct RuleError: Error, Sendable, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A threshold comparison.
enum Comparison: String, Sendable, CaseIterable {
    case greater = ">", greaterOrEqual = ">=", less = "<", lessOrEqual = "<=", equal = "==", notEqual = "!="

    func holds(_ value: Double, _ threshold: Double) -> Bool {
        switch self {
        case .greater: value > threshold
        case .greaterOrEqual: value >= threshold
        case .less: value < threshold
        case .lessOrEqual: value <= threshold
        case .equal: value == threshold
        case .notEqual: value != threshold
        }
    }
}

/// One validated alert rule.
struct AlertRule: Sendable {
    let name: String
    let environment: String
    let metric: String
    let matchers: [LabelMatcher]
    let comparison: Comparison
    let threshold: Double
    /// Hysteresis: a firing series resolves only once the condition fails against this value.
    let clearThreshold: Double?
    let forDuration: Duration
    let keepFiring: Duration
    let severity: String
    let channel: String?
    let description: String?

    /// Whether the rule's condition holds for a value.
    func fires(_ value: Double) -> Bool { comparison.holds(value, threshold) }

    /// Whether a firing series has recovered: past the clear threshold when there is one.
    func clears(_ value: Double) -> Bool {
        guard let clearThreshold, comparison != .equal, comparison != .notEqual else { return !fires(value) }
        return !comparison.holds(value, clearThreshold)
    }

    /// The series a rule watches: samples of its family (counters also as `name_total`,
    /// histograms as `name_count` and `name_sum`) whose labels match every matcher.
    func series(in snapshot: MetricSnapshot) -> [(labels: Labels, value: Double)] {
        var found: [(Labels, Double)] = []
        for family in snapshot.families {
            let sampleNames: [String: (SeriesValue) -> Double?] = Self.sampleReaders(family)
            guard let read = sampleNames[metric] else { continue }
            for series in family.series where matchers.allSatisfy({ $0.matches(series.labels) }) {
                if let value = read(series.value) { found.append((series.labels, value)) }
            }
        }
        return found
    }

    private static func sampleReaders(_ family: MetricFamily) -> [String: (SeriesValue) -> Double?] {
        let number: (SeriesValue) -> Double? = { if case .number(let value) = $0 { value } else { nil } }
        switch family.descriptor.type {
        case .counter:
            return [family.name: number, family.name + "_total": number]
        case .histogram:
            return [
                family.name + "_count": { if case .histogram(let h) = $0 { Double(h.count) } else { nil } },
                family.name + "_sum": { if case .histogram(let h) = $0 { h.sum } else { nil } },
            ]
        case .info:
            return [family.name + "_info": number]
        case .gauge:
            return [family.name: number]
        }
    }
}
