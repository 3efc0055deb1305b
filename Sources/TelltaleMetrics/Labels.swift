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
        utf8.count == other.utf8.count && comparingBytes(other) == 0
    }

    /// Negative, zero or positive as this string sorts before, with or after `other` by its
    /// UTF-8 bytes: the order of code points, and a total order that agrees with `hasSameBytes`.
    /// Native strings are compared in place (this runs for every label of every series a
    /// family sorts).
    public func comparingBytes(_ other: String) -> Int {
        let inPlace = utf8.withContiguousStorageIfAvailable { left in
            other.utf8.withContiguousStorageIfAvailable { right in Self.comparing(left, right) }
        }
        if let inPlace = inPlace ?? nil { return inPlace }
        return Self.comparing(Array(utf8), Array(other.utf8))
    }

    private static func comparing<Bytes: RandomAccessCollection<UInt8>>(_ left: Bytes, _ right: Bytes) -> Int where Bytes.Index == Int {
        for index in 0..<Swift.min(left.count, right.count) where left[left.startIndex + index] != right[right.startIndex + index] {
            return Int(left[left.startIndex + index]) - Int(right[right.startIndex + index])
        }
        return left.count - right.count
    }

    /// Hashes the bytes, agreeing with `hasSameBytes`.
    public func hashBytes(into hasher: inout Hasher) {
        hasher.combine(utf8.count)
        if utf8.withContiguousStorageIfAvailable({ hasher.combine(bytes: UnsafeRawBufferPointer($0)) }) == nil {
            for byte in utf8 { hasher.combine(byte) }
        }
    }
}

/// A string that is equal to, hashes and sorts against another by its UTF-8 bytes: a key for
/// dictionaries and sets of label values and series, which must tell apart what Prometheus
/// tells apart (an `é` in NFC and in NFD), where `String` keys would merge them.
public struct ExactString: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let text: String

    public init(_ text: String) { self.text = text }

    public var description: String { text }

    public static func == (lhs: ExactString, rhs: ExactString) -> Bool { lhs.text.hasSameBytes(as: rhs.text) }

    public static func < (lhs: ExactString, rhs: ExactString) -> Bool { lhs.text.comparingBytes(rhs.text) < 0 }

    public func hash(into hasher: inout Hasher) { text.hashBytes(into: &hasher) }
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
            let name = left.name.comparingBytes(right.name)
            if name != 0 { return name < 0 }
            let value = left.value.comparingBytes(right.value)
            if value != 0 { return value < 0 }
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
