/// One label of a series. Two labels are equal when their bytes are: Prometheus tells series
/// apart by bytes, while Swift's `==` on strings holds canonically equivalent ones (an `é`
/// in NFC and in NFD) equal.
public struct Label: Hashable, Sendable {
    public let name: String
    public let value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    public static func == (lhs: Label, rhs: Label) -> Bool {
        lhs.name.hasSameBytes(as: rhs.name) && lhs.value.hasSameBytes(as: rhs.value)
    }

    public func hash(into hasher: inout Hasher) {
        name.hashBytes(into: &hasher)
        value.hashBytes(into: &hasher)
    }
}

extension String {
    /// Byte equality (see `Label`).
    public func hasSameBytes(as other: String) -> Bool {
        var (lhs, rhs) = (self, other)  // `withUTF8` is mutating; native strings are not copied
        return lhs.withUTF8 { left in rhs.withUTF8 { right in left.elementsEqual(right) } }
    }

    /// Byte order: the order of code points, and a total order that agrees with `hasSameBytes`.
    public func precedesInBytes(_ other: String) -> Bool {
        var (lhs, rhs) = (self, other)
        return lhs.withUTF8 { left in rhs.withUTF8 { right in left.lexicographicallyPrecedes(right) } }
    }

    /// Hashes the bytes, agreeing with `hasSameBytes`.
    public func hashBytes(into hasher: inout Hasher) {
        var copy = self
        copy.withUTF8 { bytes in
            hasher.combine(bytes.count)
            hasher.combine(bytes: UnsafeRawBufferPointer(bytes))
        }
    }
}

/// A label set, kept sorted by label name so that equal sets compare and print identically.
public struct Labels: Hashable, Comparable, Sendable, ExpressibleByDictionaryLiteral {
    public private(set) var labels: [Label]

    public static let none = Labels()

    public init() { labels = [] }

    /// Builds a set from pairs; a repeated name keeps its last value. Label sets are small,
    /// so a sorted array beats hashing here (this runs for every series of every run).
    public init(_ pairs: [(String, String)]) {
        labels = []
        labels.reserveCapacity(pairs.count)
        for (name, value) in pairs { insert(Label(name, value)) }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    public var isEmpty: Bool { labels.isEmpty }

    /// The labels as a dictionary (JSON output).
    public var dictionary: [String: String] {
        Dictionary(labels.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
    }

    public subscript(name: String) -> String? {
        labels.first { $0.name == name }?.value
    }

    /// A copy with one more label (or that label replaced).
    public func adding(_ name: String, _ value: String) -> Labels {
        // A copy sized for one more label: copying on write would double the capacity, and
        // label sets are kept by the thousand.
        var copy = Labels()
        copy.labels.reserveCapacity(labels.count + 1)
        copy.labels.append(contentsOf: labels)
        copy.insert(Label(name, value))
        return copy
    }

    /// Inserts in name order, replacing a label of the same name.
    private mutating func insert(_ label: Label) {
        var index = labels.endIndex
        while index > labels.startIndex, labels[index - 1].name >= label.name { index -= 1 }
        if index < labels.endIndex, labels[index].name == label.name {
            labels[index] = label
        } else {
            labels.insert(label, at: index)
        }
    }

    public static func < (lhs: Labels, rhs: Labels) -> Bool {
        for (left, right) in zip(lhs.labels, rhs.labels) {
            if !left.name.hasSameBytes(as: right.name) { return left.name.precedesInBytes(right.name) }
            if !left.value.hasSameBytes(as: right.value) { return left.value.precedesInBytes(right.value) }
        }
        return lhs.labels.count < rhs.labels.count
    }
}

extension Labels {
    /// This set plus every label of `other` (which wins on a clash).
    public func merging(_ other: Labels) -> Labels {
        Labels(labels.map { ($0.name, $0.value) } + other.labels.map { ($0.name, $0.value) })
    }
}

/// The label sets of a source's previous run, by position. Rows of a query mostly come back
/// in the same order with the same labels; reusing the previous run's set at the same position
/// when it is equal makes consecutive runs' families share their label sets, rather than each
/// run allocating (and, while both are alive, holding) a second copy of every one.
public struct PositionalLabels: Sendable {
    private var previous: [Labels] = []
    private var current: [Labels] = []

    public init() {}

    /// The label set of `pairs` (as `Labels(pairs)` builds it) for the next position.
    public func labels(_ pairs: [(String, String)]) -> Labels {
        let position = current.count
        return position < previous.count && previous[position].isBuilt(from: pairs) ? previous[position] : Labels(pairs)
    }

    /// Takes a set the run kept as the next position's. Only kept sets are taken, so a
    /// source returning far more rows than it may keep holds no set per dropped row.
    public mutating func keep(_ labels: Labels) {
        current.append(labels)
    }

    /// Ends a run: its sets are the ones the next run reuses.
    public mutating func endRun() {
        previous = current
        current = []
        current.reserveCapacity(previous.count)
    }
}

extension Labels {
    /// Whether `Labels(pairs)` would equal this set: the same names, each with the value of
    /// its last pair. Label sets are small, so the quadratic look-ups cost less than building.
    func isBuilt(from pairs: [(String, String)]) -> Bool {
        guard pairs.count >= labels.count else { return false }
        for (name, _) in pairs where !labels.contains(where: { $0.name.hasSameBytes(as: name) }) { return false }
        for label in labels {
            guard let last = pairs.last(where: { $0.0.hasSameBytes(as: label.name) }), last.1.hasSameBytes(as: label.value)
            else { return false }
        }
        return true
    }
}
