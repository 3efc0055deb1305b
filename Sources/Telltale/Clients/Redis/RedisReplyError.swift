/// What Telltale says about a Redis error reply.
///
/// Redis quotes a rejected command's arguments in some errors ("ERR unknown command 'AUTH',
/// with args beginning with: 'the-password'"): that part is cut before the text goes
/// anywhere. Errors that have one usual cause get a message that names it.
enum RedisReplyError {
    static let maxLength = 200

    /// The error without any quoted arguments, clipped.
    static func sanitized(_ reply: String) -> String {
        var text = Substring(reply)
        if let quoted = text.range(of: ", with args beginning with") { text = text[..<quoted.lowerBound] }
        return String(text).trimming(" \r\n").clipped(maxLength)
    }

    /// The error code: the reply's first word (`NOPERM`, `WRONGTYPE`, `MOVED`, `ERR`…).
    static func code(_ reply: String) -> String {
        String(reply.prefix { $0 != " " }.prefix(32))
    }

    /// A message for the log and `/`.
    static func describe(_ reply: String) -> String {
        let text = sanitized(reply)
        switch code(reply) {
        case "NOAUTH":
            return "Redis requires authentication (NOAUTH): set queues.redis.password, or a password in the URL"
        case "WRONGPASS":
            return "Redis refused the username or password (WRONGPASS)"
        default:
            if text.contains("unknown command") {
                return text + " (is this a Redis Sentinel's port? point queues.redis at the Redis server itself)"
            }
            return text
        }
    }
}
