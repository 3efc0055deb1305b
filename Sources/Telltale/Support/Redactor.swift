/// Removes secrets from text that leaves the process: log lines, errors on `/`, the outbox.
///
/// Services echo what they were sent in their errors, and not always verbatim: upper-cased,
/// or percent-encoded as part of a URL. Each secret is removed in its plain and its
/// percent-encoded form, compared without regard to ASCII case.
struct Redactor: Sendable {
    static let mask = "***"

    /// Lower-cased forms to look for, longest first.
    private let needles: [[UInt8]]

    init(_ secrets: [String]) {
        var forms = Set<[UInt8]>()
        for secret in secrets where !secret.isEmpty {
            forms.insert(Self.folded(Array(secret.utf8)))
            forms.insert(Self.folded(Self.percentEncoded(secret)))
        }
        needles = forms.sorted { $0.count > $1.count }
    }

    var isEmpty: Bool { needles.isEmpty }

    /// `text` with every secret replaced by `***`.
    func redact(_ text: String) -> String {
        guard !needles.isEmpty else { return text }
        let original = Array(text.utf8)
        let folded = Self.folded(original)
        var output: [UInt8] = []
        output.reserveCapacity(original.count)
        var index = 0
        while index < original.count {
            if let needle = needles.first(where: { Self.starts(folded, at: index, with: $0) }) {
                output.append(contentsOf: Self.mask.utf8)
                index += needle.count
            } else {
                output.append(original[index])
                index += 1
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Redacts, then clips to `limit` characters. Only a window a little longer than the
    /// limit is searched, so the cost is bounded, yet a secret that straddles the cut is
    /// still removed whole: clipping first would leave all of it but the last characters.
    func redact(_ text: String, clippedTo limit: Int) -> String {
        let window = limit + (needles.first?.count ?? 0) + 1
        let head = text.utf8.count > window * 4 ? String(decoding: text.utf8.prefix(window * 4), as: UTF8.self) : text
        return redact(String(head.prefix(window))).clipped(limit)
    }

    private static func starts(_ haystack: [UInt8], at start: Int, with needle: [UInt8]) -> Bool {
        guard start + needle.count <= haystack.count, haystack[start] == needle[0] else { return false }
        for offset in 1..<needle.count where haystack[start + offset] != needle[offset] { return false }
        return true
    }

    private static func folded(_ bytes: [UInt8]) -> [UInt8] {
        bytes.map { (65...90).contains($0) ? $0 + 32 : $0 }
    }

    /// Every byte outside RFC 3986's unreserved set as `%XX`.
    private static func percentEncoded(_ text: String) -> [UInt8] {
        let hex = Array("0123456789ABCDEF".utf8)
        var encoded: [UInt8] = []
        for byte in text.utf8 {
            let unreserved = (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte)
                || [45, 46, 95, 126].contains(byte)
            if unreserved {
                encoded.append(byte)
            } else {
                encoded += [37, hex[Int(byte >> 4)], hex[Int(byte & 15)]]
            }
        }
        return encoded
    }
}
