/// One label of a series.
public struct Label: Hashable, Sendable {
    public let name: String
    public let value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A label set, kept sorted by label name so that equal sets compare and print identically.
public struct Labels: Hashable, Comparable, Sendable, ExpressibleByDictionaryLiteral {
    public private(set) var labels: [Label]

    public static let none = Labels()

    public init() { labels = [] }

    /// Builds a set from pairs; a repeated name keeps its last value.
    public init(_ pairs: [(String, String)]) {
        var byName: [String: String] = [:]
        for (name, value) in pairs { byName[name] = value }
        labels = byName.map { Label($0.key, $0.value) }.sorted { $0.name < $1.name }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    public var isEmpty: Bool { labels.isEmpty }

    public subscript(name: String) -> String? {
        labels.first { $0.name == name }?.value
    }

    /// A copy with one more label (or that label replaced).
    public func adding(_ name: String, _ value: String) -> Labels {
        Labels(labels.map { ($0.name, $0.value) } + [(name, value)])
    }

    public static func < (lhs: Labels, rhs: Labels) -> Bool {
        for (left, right) in zip(lhs.labels, rhs.labels) {
            if left.name != right.name { return left.name < right.name }
            if left.value != right.value { return left.value < right.value }
        }
        return lhs.labels.count < rhs.labels.count
    }
}
