import CCrypt
import COpenSSL

/// bcrypt hashes, as the exporter toolkit's `basic_auth_users` hold them, checked by
/// libxcrypt's `crypt_r`.
enum Bcrypt {
    /// The costs accepted: bcrypt's own range. Each step doubles the time of a check.
    static let costs = 4...31

    /// Why `hash` is not a bcrypt hash Telltale can check, or nil.
    static func problem(_ hash: String) -> String? {
        let bytes = Array(hash.utf8)
        let alphabet = Set("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
        guard bytes.count == 60, hash.hasPrefix("$2a$") || hash.hasPrefix("$2b$") || hash.hasPrefix("$2y$"),
              bytes[6] == UInt8(ascii: "$"), bytes[7...].allSatisfy(alphabet.contains),
              let cost = Int(String(decoding: bytes[4..<6], as: UTF8.self)) else {
            return "expected a bcrypt hash ($2a$, $2b$ or $2y$, a two-digit cost, 53 characters of salt and hash)"
        }
        guard costs.contains(cost) else { return "bcrypt cost \(cost) is outside \(costs.lowerBound)–\(costs.upperBound)" }
        return nil
    }

    /// Whether `password` matches `hash`. Slow on purpose (the hash's cost): call it only on
    /// threads made for blocking work.
    static func matches(password: String, hash: String) -> Bool {
        // Heap-allocated: crypt_data is 32 KiB, too much for a thread pool's stack.
        let data = UnsafeMutablePointer<crypt_data>.allocate(capacity: 1)
        defer { data.deallocate() }
        memset(data, 0, MemoryLayout<crypt_data>.size)
        guard let computed = crypt_r(password, hash, data) else { return false }
        return constantTimeEqual(Array(String(cString: computed).utf8), Array(hash.utf8))
    }

    /// Equality that takes as long whatever the position of the first difference.
    static func constantTimeEqual(_ left: [UInt8], _ right: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: left.count ^ right.count)
        for index in 0..<max(left.count, right.count) {
            let a = index < left.count ? left[index] : 0
            let b = index < right.count ? right[index] : 0
            difference |= a ^ b
        }
        return difference == 0
    }

    /// SHA-256 of `parts` joined by NUL: what the check cache keeps instead of passwords.
    static func digest(_ parts: [String]) -> [UInt8] {
        let joined = Array(parts.joined(separator: "\0").utf8)
        var out = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        _ = joined.withUnsafeBufferPointer { SHA256($0.baseAddress, $0.count, &out) }
        return out
    }
}
