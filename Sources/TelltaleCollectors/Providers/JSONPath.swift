import Foundation
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// A path into a JSON document, the small language the `json` provider uses:
/// `a.b`, `a[0]`, `a[*]` (every element), `a.*` (every member's value) and `{label}`
/// (every member, its key bound to the label `label` — how object keys become labels).
/// An empty path (or `$`) is the document itself.
struct JSONPath: Sendable, Equatable {
    enum Step: Sendable, Equatable {
        case key(String)
        case index(Int)
        case everyElement
        case everyValue
        case keyAsLabel(String)
    }

    let steps: [Step]

    /// Nil for a malformed path (unbalanced brackets, an empty `{}` or `[]`).
    init?(_ text: String) {
        var steps: [Step] = []
        var rest = Substring(text.hasPrefix("$") ? text.dropFirst() : Substring(text))
        while !rest.isEmpty {
            if rest.first == "." { rest = rest.dropFirst(); continue }
            if rest.first == "[" {
                guard let close = rest.firstIndex(of: "]") else { return nil }
                let inside = rest[rest.index(after: rest.startIndex)..<close]
                if inside == "*" {
                    steps.append(.everyElement)
                } else if let index = Int(inside) {
                    steps.append(.index(index))
                } else if inside.count >= 2, inside.first == "'" || inside.first == "\"", inside.last == inside.first {
                    steps.append(.key(String(inside.dropFirst().dropLast())))
                } else {
                    return nil
                }
                rest = rest[rest.index(after: close)...]
            } else if rest.first == "{" {
                guard let close = rest.firstIndex(of: "}") else { return nil }
                let label = rest[rest.index(after: rest.startIndex)..<close]
                guard !label.isEmpty else { return nil }
                steps.append(.keyAsLabel(String(label)))
                rest = rest[rest.index(after: close)...]
            } else {
                let end = rest.firstIndex { $0 == "." || $0 == "[" } ?? rest.endIndex
                let name = rest[..<end]
                steps.append(name == "*" ? .everyValue : .key(String(name)))
                rest = rest[end...]
            }
        }
        self.steps = steps
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
                default:
                    return []
                }
            }
        }
        return current
    }
}
