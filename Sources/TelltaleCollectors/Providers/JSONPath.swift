import Foundation
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// A path into a JSON document, the small language the `json` provider uses:
/// `a.b`, `a[0]`, `a[*]` (every element), `a.*` (every member's value), `{label}`
/// (every member, its key bound to the label `label` — how object keys become labels) and
/// `[?(@.field == "ACTIVE")]` (the elements, or members' values, that pass a filter).
/// An empty path (or `$`) is the document itself.
struct JSONPath: Sendable, Equatable {
    enum Step: Sendable, Equatable {
        case key(String)
        case index(Int)
        case everyElement
        case everyValue
        case keyAsLabel(String)
        case filter(JSONFilter)
    }

    /// Paths come from configuration, but the parser is fuzzed and must stay cheap on anything.
    static let maxLength = 1000
    static let maxSteps = 32

    let steps: [Step]

    /// Nil for a malformed path (unbalanced brackets, an empty `{}` or `[]`, a bad filter,
    /// longer than `maxLength` or with more than `maxSteps` steps).
    init?(_ text: String) {
        guard text.utf8.count <= Self.maxLength else { return nil }
        self.init(parsing: Substring(text.hasPrefix("$") ? text.dropFirst() : Substring(text)), allowFilters: true)
    }

    /// The left side of a filter: plain keys and indexes after `@`, so that it selects at
    /// most one node (and filters never nest: the parser does not recurse further).
    init?(relative text: Substring) {
        self.init(parsing: text, allowFilters: false)
        guard steps.allSatisfy({ if case .key = $0 { true } else if case .index = $0 { true } else { false } }) else {
            return nil
        }
    }

    private init?(parsing text: Substring, allowFilters: Bool) {
        var steps: [Step] = []
        var rest = text
        while !rest.isEmpty {
            if rest.first == "." {
                rest = rest.dropFirst()
                continue
            }
            guard steps.count < Self.maxSteps, let step = Self.step(&rest, allowFilters: allowFilters) else { return nil }
            steps.append(step)
        }
        self.steps = steps
    }

    /// Parses the step at the start of `rest` and moves past it.
    private static func step(_ rest: inout Substring, allowFilters: Bool) -> Step? {
        switch rest.first {
        case "[" where rest.hasPrefix("[?("):
            guard allowFilters, let (filter, after) = JSONFilter.parse(rest) else { return nil }
            rest = after
            return .filter(filter)
        case "[":
            guard let close = rest.firstIndex(of: "]") else { return nil }
            let inside = rest[rest.index(after: rest.startIndex)..<close]
            rest = rest[rest.index(after: close)...]
            if inside == "*" { return .everyElement }
            if let index = Int(inside) { return .index(index) }
            if inside.count >= 2, inside.first == "'" || inside.first == "\"", inside.last == inside.first {
                return .key(String(inside.dropFirst().dropLast()))
            }
            return nil
        case "{":
            guard let close = rest.firstIndex(of: "}") else { return nil }
            let label = rest[rest.index(after: rest.startIndex)..<close]
            rest = rest[rest.index(after: close)...]
            return label.isEmpty ? nil : .keyAsLabel(String(label))
        default:
            let end = rest.firstIndex { $0 == "." || $0 == "[" } ?? rest.endIndex
            let name = rest[..<end]
            rest = rest[end...]
            return name == "*" ? .everyValue : .key(String(name))
        }
    }

    /// Labels bound by `{label}` steps.
    var boundLabels: [String] {
        steps.compactMap { if case .keyAsLabel(let label) = $0 { label } else { nil } }
    }

    /// Every node the path reaches, with the labels bound on the way.
    func select(_ root: JSONValue) -> [(labels: [(String, String)], node: JSONValue)] {
        var current: [(labels: [(String, String)], node: JSONValue)] = [([], root)]
        for step in steps {
            current = current.flatMap { labels, node -> [(labels: [(String, String)], node: JSONValue)] in
                switch (step, node) {
                case (.key(let key), .object(let members)):
                    return members[key].map { [(labels, $0)] } ?? []
                case (.index(let index), .array(let elements)) where elements.indices.contains(index):
                    return [(labels, elements[index])]
                case (.everyElement, .array(let elements)):
                    return elements.map { (labels, $0) }
                case (.everyValue, .object(let members)):
                    return members.sorted { $0.key < $1.key }.map { (labels, $0.value) }
                case (.keyAsLabel(let label), .object(let members)):
                    return members.sorted { $0.key < $1.key }.map { (labels + [(label, $0.key)], $0.value) }
                case (.filter(let filter), .array(let elements)):
                    return elements.filter(filter.passes).map { (labels, $0) }
                case (.filter(let filter), .object(let members)):
                    return members.sorted { $0.key < $1.key }.map(\.value).filter(filter.passes).map { (labels, $0) }
                default:
                    return []
                }
            }
        }
        return current
    }
}

/// `[?(@.field OP literal)]`: `==` and `!=` against a string, number, `true`, `false` or
/// `null`; `<`, `<=`, `>`, `>=` against a number. A missing field equals nothing (so `!=`
/// passes it) and orders against nothing.
struct JSONFilter: Sendable, Equatable {
    enum Operator: String, Sendable, Equatable, CaseIterable {
        // Two-character operators first, so that `<=` is not read as `<`.
        case equal = "==", notEqual = "!=", lessOrEqual = "<=", greaterOrEqual = ">=", less = "<", greater = ">"
    }

    enum Literal: Sendable, Equatable {
        case string(String)
        case number(Double)
        case bool(Bool)
        case null
    }

    let field: JSONPath
    let op: Operator
    let literal: Literal

    /// The filter at the start of `text` (which begins with `[?(`) and the text after its `)]`.
    static func parse(_ text: Substring) -> (JSONFilter, Substring)? {
        let body = text.dropFirst(3)
        guard let close = closingIndex(body) else { return nil }
        let expression = body[..<close].trimmingCharacters(in: .whitespaces)
        guard let filter = JSONFilter(Substring(expression)) else { return nil }
        return (filter, body[close...].dropFirst(2))
    }

    /// Where `)]` closes the filter, outside quoted literals.
    private static func closingIndex(_ body: Substring) -> Substring.Index? {
        var quote: Character?
        var index = body.startIndex
        while index < body.endIndex {
            let character = body[index]
            if let open = quote {
                if character == open { quote = nil }
            } else if character == "\"" || character == "'" {
                quote = character
            } else if body[index...].hasPrefix(")]") {
                return index
            }
            index = body.index(after: index)
        }
        return nil
    }

    private init?(_ expression: Substring) {
        guard expression.first == "@" else { return nil }
        let afterAt = expression.dropFirst()
        guard let opStart = afterAt.firstIndex(where: { " =!<>".contains($0) }) else { return nil }
        guard let field = JSONPath(relative: afterAt[..<opStart]) else { return nil }
        let tail = afterAt[opStart...].drop { $0 == " " }
        guard let op = Operator.allCases.first(where: { tail.hasPrefix($0.rawValue) }),
              let literal = Self.literal(tail.dropFirst(op.rawValue.count).trimmingCharacters(in: .whitespaces)) else {
            return nil
        }
        if case .number = literal {} else if ![.equal, .notEqual].contains(op) { return nil }
        self.field = field
        self.op = op
        self.literal = literal
    }

    private static func literal(_ text: String) -> Literal? {
        switch text {
        case "true": return .bool(true)
        case "false": return .bool(false)
        case "null": return .null
        default:
            if text.count >= 2, let first = text.first, first == "\"" || first == "'", text.last == first {
                let inner = text.dropFirst().dropLast()
                return inner.contains(first) ? nil : .string(String(inner))
            }
            guard let number = Double(text), number.isFinite else { return nil }
            return .number(number)
        }
    }

    func passes(_ node: JSONValue) -> Bool {
        let value = field.select(node).first?.node
        switch op {
        case .equal: return Self.equal(value, literal)
        case .notEqual: return !Self.equal(value, literal)
        default:
            guard case .number(let bound) = literal, let number = value?.number else { return false }
            switch op {
            case .less: return number < bound
            case .lessOrEqual: return number <= bound
            case .greater: return number > bound
            default: return number >= bound
            }
        }
    }

    /// Equality by JSON type: the string `"1"` does not equal the number `1`.
    private static func equal(_ value: JSONValue?, _ literal: Literal) -> Bool {
        switch (value, literal) {
        case (.string(let text)?, .string(let expected)): text == expected
        case (.number(let number)?, .number(let expected)): number == expected
        case (.bool(let flag)?, .bool(let expected)): flag == expected
        case (.null?, .null): true
        default: false
        }
    }
}
