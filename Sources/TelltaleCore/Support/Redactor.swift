import TelltaleMetrics

/// Removes secrets from text that leaves the process: log lines, errors on `/`, the outbox.
///
/// Services echo what they were sent in their errors, and not always verbatim: upper-cased,
/// or percent-encoded as part of a URL. Each secret is removed in its plain and its
/// percent-encoded form, compared without regard to ASCII case.
package struct Redactor: Sendable {
    package static let mask = "***"

    /// Lower-cased forms to look for, longest first.
    private let needles: [[UInt8]]
    /// Shorter secrets are not looked for: masking every `p` of a message for the password
    /// `p` garbles it (`***ort 5432`) and points at the secret rather than hiding it.
    package static let minimumLength = 4

    package init(_ secrets: [String]) {
        var forms = Set<[UInt8]>()
        for secret in secrets where secret.utf8.count >= Self.minimumLength {
            forms.insert(Self.folded(Array(secret.utf8)))
            forms.insert(Self.folded(Self.percentEncoded(secret)))
        }
        needles = forms.sorted { $0.count > $1.count }
    }

    package var isEmpty: Bool { needles.isEmpty }

    /// `text` with every secret replaced by `***`.
    package func redact(_ text: String) -> String {
        guard !needles.isEmpty else { return text }
        return String(decoding: redacted(Array(text.utf8), stoppingAfter: .max).output, as: UTF8.self)
    }

    /// Redacts, then clips to `limit` characters: the same as `redact(text).clipped(limit)`,
    /// but only as much of the text is scanned as the clipped result needs, so the cost is
    /// bounded by the limit, not by the text. (Clipping first would leave all but the last
    /// characters of a secret that straddles the cut.)
    package func redact(_ text: String, clippedTo limit: Int) -> String {
        let original = Array(text.utf8)
        var budget = 4 * (limit + 2)
        while true {
            let (output, finished) = redacted(original, stoppingAfter: budget)
            let result = String(decoding: output, as: UTF8.self)
            // One more character than kept, and one that may be cut in half, to be sure the
            // kept ones are exactly those of the whole.
            if finished || result.count > limit + 1 { return result.clipped(limit) }
            budget *= 2
        }
    }

    /// Scans left to right, replacing each secret found; stops once the output holds
    /// `stoppingAfter` bytes. Returns whether the whole text was scanned.
    private func redacted(_ original: [UInt8], stoppingAfter budget: Int) -> (output: [UInt8], finished: Bool) {
        var output: [UInt8] = []
        output.reserveCapacity(min(original.count, budget))
        var index = 0
        while index < original.count {
            if output.count >= budget { return (output, false) }
            if let needle = needles.first(where: { Self.starts(original, at: index, with: $0) }) {
                output.append(contentsOf: Self.mask.utf8)
                index += needle.count
            } else {
                output.append(original[index])
                index += 1
            }
        }
        return (output, true)
    }

    /// Whether `needle` (folded) stands at `start` of `haystack`, compared without ASCII case.
    private static func starts(_ haystack: [UInt8], at start: Int, with needle: [UInt8]) -> Bool {
        guard start + needle.count <= haystack.count else { return false }
        for offset in 0..<needle.count where fold(haystack[start + offset]) != needle[offset] { return false }
        return true
    }

    private static func fold(_ byte: UInt8) -> UInt8 { (65...90).contains(byte) ? byte + 32 : byte }

    private static func folded(_ bytes: [UInt8]) -> [UInt8] {
        bytes.map(fold)
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
