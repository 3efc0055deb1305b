import CYaml
import Glibc
import TelltaleMetrics
import Yams

/// Every problem found in a configuration file, each naming its key path.
public struct ConfigErrors: Error, CustomStringConvertible {
    public let problems: [String]

    public var description: String {
        "invalid configuration:\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
    }

    package init(problems: [String]) {
        self.problems = problems
    }
}

/// Collects problems while a configuration is read, so that all of them are reported at once.
package final class ConfigProblems {
    package private(set) var list: [String] = []

    package init() {}

    package func add(_ path: String, _ message: String) {
        list.append(path.isEmpty ? message : "\(path): \(message)")
    }
}

/// A YAML mapping being read. Every accessor checks the value's type and records a problem
/// naming the key path instead of throwing; `finish()` reports keys nobody asked for.
package final class ConfigMap {
    package let path: String
    package let problems: ConfigProblems
    private let entries: [(key: String, value: Node)]
    private var read: Set<String> = []

    package init?(_ node: Node, path: String, problems: ConfigProblems) {
        guard case .mapping(let mapping) = node else {
            problems.add(path, "expected a mapping of keys to values")
            return nil
        }
        self.path = path
        self.problems = problems
        self.entries = mapping.map { (key: $0.key.string ?? "\($0.key)", value: $0.value) }
    }

    /// A mapping without keys: what reads as every default. Made without a Yams node, whose
    /// construction would load ICU (about 0.6 MiB resident) just to run with no file.
    package init(emptyAt path: String = "", problems: ConfigProblems) {
        self.path = path
        self.problems = problems
        self.entries = []
    }

    package func childPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The raw node of `key`, marking it as known. A YAML `null` counts as absent.
    package func node(_ key: String) -> Node? {
        read.insert(key)
        guard let node = entries.first(where: { $0.key == key })?.value else { return nil }
        if case .scalar(let scalar) = node, scalar.style == .plain, ["", "~", "null"].contains(scalar.string) { return nil }
        return node
    }

    package func has(_ key: String) -> Bool { entries.contains { $0.key == key } }

    /// The keys as written, for mappings whose keys are data (static labels).
    package var keys: [String] { entries.map(\.key) }

    /// The keys of a mapping of secrets (headers): `name_file` stands for `name`.
    package var secretKeys: [String] {
        var names: [String] = []
        for entry in entries {
            let name = entry.key.hasSuffix("_file") ? String(entry.key.dropLast("_file".count)) : entry.key
            if !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// A scalar as text, with `${VAR}` and `${VAR:-default}` replaced from the environment.
    package func string(_ key: String) -> String? {
        guard let node = node(key) else { return nil }
        guard case .scalar(let scalar) = node else {
            problems.add(childPath(key), "expected a single value, not a list or mapping")
            return nil
        }
        return substituteEnvironment(scalar.string, path: childPath(key))
    }

    /// A secret given inline as `key` or read from the file named by `key_file`.
    /// Problems name the key, never the secret.
    package func secret(_ key: String) -> String? {
        let inline = string(key)
        guard let file = string(key + "_file") else { return inline }
        if inline != nil {
            problems.add(childPath(key), "set either \(key) or \(key)_file, not both")
            return nil
        }
        switch BoundedFile.readSecret(file) {
        case .success(let content): return content
        case .failure(let problem):
            problems.add(childPath(key + "_file"), problem.description)
            return nil
        }
    }

    package func bool(_ key: String) -> Bool? {
        guard let text = string(key) else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            problems.add(childPath(key), "expected true or false, got \"\(text)\"")
            return nil
        }
    }

    package func int(_ key: String, in range: ClosedRange<Int>) -> Int? {
        guard let text = string(key) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            problems.add(childPath(key), "expected a whole number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
            return nil
        }
        return value
    }

    package func double(_ key: String) -> Double? {
        guard let text = string(key) else { return nil }
        guard let value = Double(text), value.isFinite else {
            problems.add(childPath(key), "expected a number, got \"\(text)\"")
            return nil
        }
        return value
    }

    /// A positive duration such as `15s`, `500ms`, `2m`, `1h`, or a bare number of seconds
    /// (zero too where `allowZero`, as for an alert's `for`).
    package func duration(_ key: String, allowZero: Bool = false) -> Duration? {
        guard let text = string(key) else { return nil }
        guard let value = parseDuration(text), value > .zero || (allowZero && value == .zero) else {
            let kind = allowZero ? "a duration" : "a positive duration"
            problems.add(childPath(key), "expected \(kind) such as 500ms, 15s, 2m or 1h, got \"\(text)\"")
            return nil
        }
        return value
    }

    package func map(_ key: String) -> ConfigMap? {
        node(key).flatMap { ConfigMap($0, path: childPath(key), problems: problems) }
    }

    /// The items of a list, each with its own path (`key[2]`).
    package func list(_ key: String) -> [(path: String, node: Node)]? {
        guard let node = node(key) else { return nil }
        guard case .sequence(let sequence) = node else {
            problems.add(childPath(key), "expected a list")
            return nil
        }
        return sequence.enumerated().map { ("\(childPath(key))[\($0.offset)]", $0.element) }
    }

    package func stringList(_ key: String) -> [String]? {
        list(key)?.compactMap { path, node in
            guard case .scalar(let scalar) = node else {
                problems.add(path, "expected a single value")
                return nil
            }
            return substituteEnvironment(scalar.string, path: path)
        }
    }

    /// Reports keys that no accessor asked for: a misspelt key must not be silently ignored.
    package func finish() {
        for entry in entries where !read.contains(entry.key) {
            problems.add(childPath(entry.key), "unknown key")
        }
    }

    private func substituteEnvironment(_ text: String, path: String) -> String? {
        var result = ""
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            result += rest[..<dollar]
            let afterDollar = rest.index(after: dollar)
            if rest[afterDollar...].hasPrefix("$") {
                result += "$"
                rest = rest[rest.index(after: afterDollar)...]
            } else if rest[afterDollar...].hasPrefix("{"), let close = rest[afterDollar...].firstIndex(of: "}") {
                let reference = rest[rest.index(after: afterDollar)..<close]
                let parts = reference.split(separator: ":-", maxSplits: 1, omittingEmptySubsequences: false)
                let name = String(parts[0])
                if let value = getenv(name) {
                    result += String(cString: value)
                } else if parts.count == 2 {
                    result += parts[1]
                } else {
                    problems.add(path, "environment variable \(name) is not set")
                    return nil
                }
                rest = rest[rest.index(after: close)...]
            } else {
                result += "$"
                rest = rest[afterDollar...]
            }
        }
        return result + rest
    }
}

/// Parses `500ms`, `15s`, `2m`, `1h`, `1d` or a bare number of seconds, up to a year.
package func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
    let trimmed = text.trimming(" ")
    let (number, scale) = units.first { trimmed.hasSuffix($0.0) }
        .map { (Double(trimmed.dropLast($0.0.count)), $0.1) } ?? (Double(trimmed), 1)
    // Checked before converting: an absurd value must be a config error, not a trap.
    guard let number, number.isFinite, abs(number * scale) <= 366 * 86400 else { return nil }
    return .milliseconds(Int64((number * scale * 1000).rounded()))
}

/// Bounds the cost of YAML aliases. An alias is a reference: a few of them nested expand to
/// an exponential tree (the "billion laughs"), and one used as a mapping key made the YAML
/// library hash the whole expanded tree at 100 % CPU. Before the document is composed, its
/// events are read with libyaml (linear in the text) and the nodes the aliases would add
/// are counted exactly: more than `limit` is an error.
package enum YAMLAliases {
    package static let limit = 10_000

    package static func problem(_ text: String) -> String? {
        guard let added = nodesAddedByAliases(text), added > limit else { return nil }
        return "YAML aliases (*name) would add \(added) nodes; at most \(limit) are allowed"
    }

    /// Nodes the aliases stand for beyond themselves, or nil when the text is not valid YAML
    /// (the composer reports that, with its position).
    package static func nodesAddedByAliases(_ text: String) -> Int? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBufferPointer { buffer -> Int? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var sizes: [String: Int] = [:]
            var open: [(anchor: String?, size: Int)] = [(nil, 0)]
            var added = 0
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
                defer { yaml_event_delete(&event) }
                var node: (anchor: String?, size: Int)?
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return added
                case YAML_SCALAR_EVENT:
                    node = (anchorName(event.data.scalar.anchor), 1)
                case YAML_ALIAS_EVENT:
                    let size = anchorName(event.data.alias.anchor).flatMap { sizes[$0] } ?? 1
                    added = min(added + size - 1, Int.max / 2)
                    node = (nil, size)
                case YAML_SEQUENCE_START_EVENT:
                    open.append((anchorName(event.data.sequence_start.anchor), 1))
                case YAML_MAPPING_START_EVENT:
                    open.append((anchorName(event.data.mapping_start.anchor), 1))
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    node = open.count > 1 ? open.removeLast() : nil
                default:
                    break
                }
                guard let node else { continue }
                if let anchor = node.anchor { sizes[anchor] = node.size }
                open[open.count - 1].size = min(open[open.count - 1].size + node.size, Int.max / 2)
            }
        }
    }

    private static func anchorName(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: $0) }
    }
}

extension Schedule {
    /// Reads `interval` and `timeout`; the timeout may not exceed the interval.
    package mutating func read(_ map: ConfigMap) {
        if let interval = map.duration("interval") { self.interval = interval }
        if let timeout = map.duration("timeout") { self.timeout = timeout }
        if timeout > interval {
            map.problems.add(map.childPath("timeout"), "must not be longer than the interval (\(interval))")
        }
    }
}
