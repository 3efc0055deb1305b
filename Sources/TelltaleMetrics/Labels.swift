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
///
/// Sets are kept by the ten thousand (one per series), so they are packed into one buffer: for
/// each label in name order, the name's UTF-8 length (LEB128) and bytes, then the value's. An
/// array of `Label`s took 32 bytes per label plus its header; this takes about a third. The
/// order and the encoding are canonical, so two sets are equal, and hash alike, when their
/// bytes are: what Prometheus tells series apart by.
public struct Labels: Hashable, Comparable, Sendable, Sequence, ExpressibleByDictionaryLiteral {
    private var packed: [UInt8]

    public static let none = Labels()

    public init() { packed = [] }

    /// Builds a set from pairs; a repeated name keeps its last value. Label sets are small,
    /// so a sorted array beats hashing here (this runs for every series of every run).
    public init(_ pairs: [(String, String)]) {
        var sorted: [Label] = []
        sorted.reserveCapacity(pairs.count)
        for (name, value) in pairs { Self.insert(Label(name, value), into: &sorted) }
        packed = Self.pack(sorted)
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    public var isEmpty: Bool { packed.isEmpty }

    /// The labels, decoded (a copy: iterate the set itself where that will do).
    public var labels: [Label] { Array(self) }

    /// The labels as a dictionary (JSON output).
    public var dictionary: [String: String] {
        Dictionary(map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
    }

    public subscript(name: String) -> String? {
        var found: String?
        forEachBytes { label, value in
            if found == nil, name.utf8.elementsEqual(label) { found = String(decoding: value, as: UTF8.self) }
        }
        return found
    }

    /// A copy with one more label (or that label replaced).
    public func adding(_ name: String, _ value: String) -> Labels {
        var list = labels
        Self.insert(Label(name, value), into: &list)
        var copy = Labels()
        copy.packed = Self.pack(list)
        return copy
    }

    /// Calls `body` with each label's name and value bytes, in name order, making no strings
    /// (the exposition encoder runs this for every series of a render).
    public func forEachBytes(_ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) throws -> Void) rethrows {
        try packed.withUnsafeBufferPointer { bytes in
            var offset = 0
            while offset < bytes.count {
                let name = Self.field(bytes, &offset)
                try body(name, Self.field(bytes, &offset))
            }
        }
    }

    public func makeIterator() -> Iterator { Iterator(packed: packed) }

    public struct Iterator: IteratorProtocol {
        fileprivate let packed: [UInt8]
        fileprivate var offset = 0

        public mutating func next() -> Label? {
            guard offset < packed.count else { return nil }
            return packed.withUnsafeBufferPointer { bytes in
                let name = Labels.field(bytes, &offset)
                let value = Labels.field(bytes, &offset)
                return Label(String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self))
            }
        }
    }

    /// The buffer itself, for tests that check that sets share it.
    package var packedBytes: [UInt8] { packed }

    public static func == (lhs: Labels, rhs: Labels) -> Bool { lhs.packed == rhs.packed }

    public func hash(into hasher: inout Hasher) {
        packed.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    /// Label by label: names, then values, by their bytes; a set that is a prefix of another
    /// sorts first.
    public static func < (lhs: Labels, rhs: Labels) -> Bool {
        lhs.packed.withUnsafeBufferPointer { left in
            rhs.packed.withUnsafeBufferPointer { right in
                var (leftOffset, rightOffset) = (0, 0)
                while leftOffset < left.count, rightOffset < right.count {
                    for _ in 0..<2 {  // the name, then the value
                        let order = compare(field(left, &leftOffset), field(right, &rightOffset))
                        if order != 0 { return order < 0 }
                    }
                }
                return leftOffset >= left.count && rightOffset < right.count
            }
        }
    }

    /// Inserts in name order, replacing a label of the same name.
    private static func insert(_ label: Label, into labels: inout [Label]) {
        var index = labels.endIndex
        while index > labels.startIndex, labels[index - 1].name.comparingBytes(label.name) >= 0 { index -= 1 }
        if index < labels.endIndex, labels[index].name.hasSameBytes(as: label.name) {
            labels[index] = label
        } else {
            labels.insert(label, at: index)
        }
    }

    private static func pack(_ labels: [Label]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(labels.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 })
        for label in labels {
            append(label.name, to: &bytes)
            append(label.value, to: &bytes)
        }
        return bytes
    }

    private static func append(_ text: String, to bytes: inout [UInt8]) {
        var length = text.utf8.count
        while length >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: length) | 0x80)
            length >>= 7
        }
        bytes.append(UInt8(length))
        bytes.append(contentsOf: text.utf8)
    }

    /// The field at `offset`, which moves past it. The buffer is always one `pack` wrote.
    private static func field(_ bytes: UnsafeBufferPointer<UInt8>, _ offset: inout Int) -> UnsafeBufferPointer<UInt8> {
        var (length, shift) = (0, 0)
        while true {
            let byte = bytes[offset]
            offset += 1
            length |= Int(byte & 0x7F) << shift
            if byte < 0x80 { break }
            shift += 7
        }
        defer { offset += length }
        return UnsafeBufferPointer(rebasing: bytes[offset..<offset + length])
    }

    /// Negative, zero or positive as `left` sorts before, with or after `right`, by bytes.
    private static func compare(_ left: UnsafeBufferPointer<UInt8>, _ right: UnsafeBufferPointer<UInt8>) -> Int {
        for index in 0..<Swift.min(left.count, right.count) where left[index] != right[index] {
            return Int(left[index]) - Int(right[index])
        }
        return left.count - right.count
    }
}

extension Labels {
    /// This set plus every label of `other` (which wins on a clash).
    public func merging(_ other: Labels) -> Labels {
        Labels(map { ($0.name, $0.value) } + other.map { ($0.name, $0.value) })
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
        var (count, matches) = (0, true)
        forEachBytes { name, value in
            count += 1
            guard matches, let last = pairs.last(where: { $0.0.utf8.elementsEqual(name) }), last.1.utf8.elementsEqual(value)
            else { return matches = false }
        }
        guard matches, pairs.count >= count else { return false }
        return pairs.allSatisfy { pair in
            var found = false
            forEachBytes { name, _ in found = found || pair.0.utf8.elementsEqual(name) }
            return found
        }
    }
}

extension Labels: CustomStringConvertible {
    /// `{name="value",…}`, values unescaped (for messages and test failures).
    public var description: String {
        "{" + map { "\($0.name)=\"\($0.value)\"" }.joined(separator: ",") + "}"
    }
}
