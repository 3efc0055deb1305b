import TelltaleCore
import TelltaleMetrics

/// One item of a `json` provider's `metrics:`: a family of its own, read from the response
/// the provider already fetches (json_exporter's job, with key-to-label and value maps).
public struct JSONMetricRule: Sendable, Equatable {
    /// A label whose value is read from each selected object.
    struct LabelPath: Sendable, Equatable {
        var name: String
        var path: JSONPath
    }

    static let defaultMaxSeries = 1000

    var descriptor: MetricDescriptor
    /// Selects the objects, one series each; `{label}` steps bind labels from object keys.
    var path: JSONPath
    /// The value, relative to each selected object (empty: the object itself). Unused by info.
    var value: JSONPath
    /// Numbers for strings (and `true`/`false`), such as `UP: 1, DOWN: 0`.
    var valueMap: [String: Double] = [:]
    var labels: [LabelPath] = []
    var staticLabels: Labels = .none
    var maxSeries = defaultMaxSeries

    /// The family name as exposed: counters gain `_total`, info `_info`.
    var exposedName: String {
        switch descriptor.type {
        case .counter: descriptor.name + "_total"
        case .info: descriptor.name + "_info"
        default: descriptor.name
        }
    }
}

// MARK: - Reading the configuration

extension JSONMetricRule {
    static let types: [String: MetricType] = ["gauge": .gauge, "counter": .counter, "info": .info]

    /// `reserved`: label names taken by every series of the provider (`provider` and its `labels:`).
    static func read(_ map: ConfigMap, reserved: Set<String>) -> JSONMetricRule? {
        let descriptor = readDescriptor(map)
        let path = readPath(map, "path")
        if path == nil && !map.has("path") { map.problems.add(map.childPath("path"), "is required") }
        var rule = JSONMetricRule(descriptor: descriptor ?? MetricDescriptor("", .gauge, help: ""),
                                  path: path ?? JSONPath("")!, value: readPath(map, "value") ?? JSONPath("")!)
        if let cap = map.int("max_series", in: 1...100_000) { rule.maxSeries = cap }
        rule.valueMap = readValueMap(map)
        if descriptor?.type == .info, map.has("value") || map.has("value_map") {
            map.problems.add(map.childPath("value"), "an info metric's value is always 1: drop value and value_map")
        }
        rule.readLabels(map, reserved: reserved)
        map.finish()
        return descriptor == nil || path == nil ? nil : rule
    }

    /// `name`, `type` and `help`; nil (with the problem recorded) when unusable.
    private static func readDescriptor(_ map: ConfigMap) -> MetricDescriptor? {
        let name = map.string("name") ?? ""
        let typeText = map.string("type") ?? "gauge"
        let help = map.string("help") ?? "Read by Telltale from a JSON API."
        guard let type = types[typeText] else {
            map.problems.add(map.childPath("type"), "expected gauge, counter or info, got \"\(typeText)\"")
            return nil
        }
        let descriptor = MetricDescriptor(name, type, help: help)
        let problem = name.isEmpty ? "is required"
            : name.hasPrefix("telltale_") ? "the telltale_ prefix is Telltale's own" : descriptor.problem
        if let problem { map.problems.add(map.childPath("name"), problem) }
        return problem == nil ? descriptor : nil
    }

    private static func readPath(_ map: ConfigMap, _ key: String) -> JSONPath? {
        guard let text = map.string(key) else { return nil }
        guard let parsed = JSONPath(text) else {
            map.problems.add(map.childPath(key), "not a valid path (a.b, a[0], a[*], a.*, {label}, [?(@.field == \"x\")])")
            return nil
        }
        return parsed
    }

    private static func readValueMap(_ map: ConfigMap) -> [String: Double] {
        guard let values = map.map("value_map") else { return [:] }
        var result: [String: Double] = [:]
        for key in values.keys {
            if let number = values.double(key) { result[key] = number }
        }
        values.finish()
        return result
    }

    /// Key labels, path labels and static labels: every name valid and used once.
    private mutating func readLabels(_ map: ConfigMap, reserved: Set<String>) {
        var used = reserved
        func claim(_ name: String, at key: String) -> Bool {
            guard MetricNames.isValidLabelName(name) else {
                map.problems.add(key, "\"\(name)\" is not a valid label name")
                return false
            }
            guard used.insert(name).inserted else {
                map.problems.add(key, "label \"\(name)\" is already set (by this metric, `provider` or the provider's labels)")
                return false
            }
            return true
        }
        for label in path.boundLabels { _ = claim(label, at: map.childPath("path")) }
        if let paths = map.map("labels") {
            for name in paths.keys {
                guard let text = paths.string(name) else { continue }
                guard let parsed = JSONPath(text) else {
                    map.problems.add(paths.childPath(name), "not a valid path")
                    continue
                }
                if claim(name, at: paths.childPath(name)) { labels.append(LabelPath(name: name, path: parsed)) }
            }
            paths.finish()
        }
        if let fixed = map.map("static_labels") {
            var pairs: [(String, String)] = []
            for name in fixed.keys {
                if let value = fixed.string(name), claim(name, at: fixed.childPath(name)) { pairs.append((name, value)) }
            }
            staticLabels = Labels(pairs)
            fixed.finish()
        }
    }
}

// MARK: - Building the series

extension JSONMetricRule {
    /// The series of one response, at most `maxSeries`. A series whose value or labels cannot
    /// be read is left out and counted in `problems`, never exported as 0.
    func build(_ document: JSONValue, base: Labels, problems: inout ProblemTally) -> (family: FamilyBuilder, dropped: Int) {
        var family = FamilyBuilder(descriptor)
        var dropped = 0
        let fixed = base.merging(staticLabels)
        for (bound, node) in path.select(document) {
            guard let labels = labels(node, bound: bound, fixed: fixed, problems: &problems),
                  let value = value(node, problems: &problems) else { continue }
            if family.contains(labels) {
                problems.add(descriptor.name + ":duplicate", reason: "duplicate_labels",
                             "metric \(descriptor.name): two selected objects have the same labels; the first is kept")
            } else if family.seriesCount >= maxSeries {
                dropped += 1
            } else {
                family.set(value, labels)
            }
        }
        return (family, dropped)
    }

    /// `fixed` (provider and static labels) plus the labels read from the selected object.
    private func labels(_ node: JSONValue, bound: [(String, String)], fixed: Labels,
                        problems: inout ProblemTally) -> Labels? {
        var pairs = bound
        for label in labels {
            guard let text = label.path.select(node).first?.node.labelText else {
                problems.add(descriptor.name + ":label", reason: "missing_field",
                             "metric \(descriptor.name): no text for label \(label.name) in a selected object")
                return nil
            }
            pairs.append((label.name, text))
        }
        return fixed.merging(Labels(pairs))
    }

    private func value(_ node: JSONValue, problems: inout ProblemTally) -> Double? {
        if descriptor.type == .info { return 1 }
        guard let found = value.select(node).first?.node else {
            problems.add(descriptor.name + ":value", reason: "missing_field",
                         "metric \(descriptor.name): a selected object has no value")
            return nil
        }
        let number: Double?
        switch found {
        case .string(let text) where !valueMap.isEmpty: number = valueMap[text]
        case .bool(let flag) where !valueMap.isEmpty: number = valueMap[flag ? "true" : "false"]
        default: number = found.number
        }
        if number == nil {
            problems.add(descriptor.name + ":bad_value", reason: "bad_value",
                         "metric \(descriptor.name): a value is not a number (nor in value_map)")
        }
        return number
    }
}
