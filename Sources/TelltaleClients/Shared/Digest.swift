import COpenSSL
import TelltaleCore

/// Digests through OpenSSL (linked already for TLS): stable identifiers derived from text
/// that may carry anything, such as a PagerDuty `dedup_key` or an email's `Message-ID`.
package enum Digest {
    /// SHA-256 of the UTF-8 bytes of `text`, as 64 lower-case hex digits.
    package static func sha256Hex(_ text: String) -> String {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { input in
            EVP_Digest(input.baseAddress, input.count, &digest, &length, EVP_sha256(), nil)
        }
        let hexDigits = Array("0123456789abcdef")
        return String(digest.prefix(Int(length)).flatMap { [hexDigits[Int($0 >> 4)], hexDigits[Int($0 & 0xF)]] })
    }
}
