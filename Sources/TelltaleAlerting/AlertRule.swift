import TelltaleClients
import TelltaleCore
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
    /// Compiled once per rule version, for `=~` and `!~`.
    let regex: BoundedRegex?

    /// A matcher; a regular expression is compiled unless `compiled` already has it.
    init(name: String, operation: Operation, value: String, compiled: [ExactString: BoundedRegex] = [:]) throws(RuleError) {
        self.name = name
        self.operation = operation
        self.value = value
        if operation == .matches || operation == .notMatches {
            if let known = compiled[ExactString(value)] {
                regex = known
            } else {
                do {
                    regex = try BoundedRegex(value, anchoring: .whole)
                } catch {
                    throw RuleError(error.description)
                }
            }
        } else {
            regex = nil
        }
    }

    /// Whether the labels satisfy the matcher; throws when a regex ran out of its budget.
    func matches(_ labels: Labels) throws(BoundedRegex.BudgetExceeded) -> Bool {
        let actual = labels[name] ?? ""
        switch operation {
        case .equal: return actual.hasSameBytes(as: value)
        case .notEqual: return !actual.hasSameBytes(as: value)
        case .matches: return try regex?.matches(actual) ?? false
        case .notMatches: return try !(regex?.matches(actual) ?? false)
        }
    }

    var description: String { "\(name)\(operation.rawValue)\"\(value)\"" }

    /// Parses `a="x",b!~"y.*"`, reusing regexes already in `compiled`; a failure says what is
    /// malformed.
    static func parseList(_ text: String, compiled: [ExactString: BoundedRegex] = [:]) -> Result<[LabelMatcher], RuleError> {
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
            do {
                matchers.append(try LabelMatcher(name: name, operation: operation, value: value, compiled: compiled))
            } catch {
                return .failure(RuleError("matcher for \(name): \(error)"))
            }
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
    /// A name in `telltale_mute_times`: the rule sends nothing inside its windows.
    var muteTime: String? = nil
    var expression = RuleExpression()

    /// Whether the rule's condition holds for a value.
    func fires(_ value: Double) -> Bool { comparison.holds(value, threshold) }

    /// Whether a firing series has recovered: past the clear threshold when there is one.
    func clears(_ value: Double) -> Bool {
        guard let clearThreshold, comparison != .equal, comparison != .notEqual else { return !fires(value) }
        return !comparison.holds(value, clearThreshold)
    }

    /// The series a rule watches: samples of its family (counters also as `name_total`,
    /// histograms as `name_count` and `name_sum`) whose labels match every matcher, read
    /// through the evaluation's index. Throws when matching ran out of its time budget
    /// (`MatchingBudget`): the rule cannot be evaluated.
    func series(in index: SnapshotIndex) throws(BoundedRegex.BudgetExceeded) -> [(labels: Labels, value: Double)] {
        var found: [(Labels, Double)] = []
        var budget = MatchingBudget(matchers)
        for source in index.sources(of: metric) {
            let series = source.family.series
            let candidates = try source.candidates(matchers, &budget)
            for position in candidates ?? Array(series.indices) {
                try budget.spend()
                let candidate = series[position]
                guard try matchesAll(candidate.labels), let value = source.reader.read(candidate.value) else { continue }
                found.append((candidate.labels, value))
            }
        }
        return found
    }

    private func matchesAll(_ labels: Labels) throws(BoundedRegex.BudgetExceeded) -> Bool {
        for matcher in matchers where try !matcher.matches(labels) { return false }
        return true
    }

    /// The longest accepted `for_seconds` and `keep_firing_seconds`: a year.
    static let maxDurationSeconds = 366.0 * 86400
    /// Longer descriptions are clipped: every platform limits a message's size, and the
    /// outbox stores a copy per notification.
    static let maxDescriptionLength = 4000
    static let maxNameLength = 200
}
