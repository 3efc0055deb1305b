import TelltaleCore
import TelltaleMetrics

/// What Telltale says about a Redis error reply.
///
/// Redis quotes a rejected command's arguments in some errors ("ERR unknown command 'AUTH',
/// with args beginning with: 'the-password'"): that part is cut before the text goes
/// anywhere, and the password is redacted besides (before clipping, so that no part of it
/// is left). Errors that have one usual cause get a message that names it.
package enum RedisReplyError {
    package static let maxLength = 200

    private static let quotedArguments = Array("with args beginning with".utf8)

    /// The error without any quoted arguments, clipped.
    package static func sanitized(_ reply: String) -> String {
        sanitized(reply, redacting: Redactor([]))
    }

    /// The error without any quoted arguments, redacted, then clipped.
    package static func sanitized(_ reply: String, redacting redactor: Redactor) -> String {
        // Error replies are short: a byte-wise, case-insensitive search needs no Foundation.
        let bytes = Array(reply.utf8)
        var end = bytes.count
        if bytes.count >= quotedArguments.count {
            for start in 0...(bytes.count - quotedArguments.count) where matchesQuotedArguments(bytes, at: start) {
                end = start
                break
            }
        }
        let text = String(decoding: bytes[..<end], as: UTF8.self).trimming(" ,\r\n\t")
        return redactor.redact(text, clippedTo: maxLength)
    }

    private static func matchesQuotedArguments(_ bytes: [UInt8], at start: Int) -> Bool {
        for (offset, expected) in quotedArguments.enumerated() {
            let byte = bytes[start + offset]
            if ((65...90).contains(byte) ? byte + 32 : byte) != expected { return false }
        }
        return true
    }

    /// The error code: the reply's first word (`NOPERM`, `WRONGTYPE`, `MOVED`, `ERR`…).
    package static func code(_ reply: String) -> String {
        String(reply.prefix { $0 != " " && $0 != "\r" && $0 != "\n" }.prefix(32))
    }

    /// A message for the log and `/`: never the command's arguments.
    package static func describe(_ reply: String) -> String {
        describe(reply, redacting: Redactor([]))
    }

    /// A message for the log and `/`: never the command's arguments, never the password.
    package static func describe(_ reply: String, redacting redactor: Redactor) -> String {
        switch code(reply) {
        case "NOAUTH":
            return "Redis requires authentication (NOAUTH): set queues.redis.password or a password in the URL"
        case "WRONGPASS":
            return "Redis refused the username or password (WRONGPASS)"
        default:
            let text = sanitized(reply, redacting: redactor)
            guard let command = unknownCommand(text) else { return text }
            if command == "auth" {
                return text + " (this Redis does not accept AUTH: renamed or disabled)"
            }
            // Sentinel knows none of the data commands (SELECT, SCAN, LLEN…).
            return text + " (is this a Redis Sentinel's port? point queues.redis at the Redis server itself)"
        }
    }

    /// `auth` for "ERR unknown command 'AUTH'" (or with backquotes, as Redis 6 writes it),
    /// lower-cased; "" when no name is quoted; nil for any other error.
    package static func unknownCommand(_ text: String) -> String? {
        let lowered = text.lowercased()
        guard let marker = lowered.firstRange(of: "unknown command") else { return nil }
        let rest = lowered[marker.upperBound...].drop { $0 == " " }
        guard let quote = rest.first, quote == "'" || quote == "`" else { return "" }
        return String(rest.dropFirst().prefix { $0 != quote })
    }
}
