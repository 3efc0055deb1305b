import CHiredis
import Glibc
import TelltaleCore
import TelltaleMetrics

/// A Redis reply as a Swift value. Redis errors are values too: in a pipeline one failed
/// command must not hide the other replies.
public enum RedisValue: Sendable, Equatable {
    case string(String)
    case status(String)
    case integer(Int64)
    case array([RedisValue])
    case null
    case error(String)

    public var integer: Int64? {
        switch self {
        case .integer(let value): value
        case .string(let text): Int64(text)
        default: nil
        }
    }

    public var string: String? {
        switch self {
        case .string(let text), .status(let text): text
        case .integer(let value): String(value)
        default: nil
        }
    }

    public var array: [RedisValue] {
        if case .array(let items) = self { items } else { [] }
    }
}

/// A failure of the connection itself (not a Redis error reply, which is a `RedisValue`).
public struct RedisError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case connect
        case connection
        case timeout
        /// The server answered with an error reply.
        case redisError = "redis_error"
    }

    public let kind: Kind
    public let message: String
    public var description: String { message }

    package init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }
}

/// Where Redis listens.
public enum RedisEndpoint: Sendable, Equatable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}

/// Owns one hiredis `redisContext` and frees it exactly once, in `deinit`.
///
/// hiredis is blocking and not thread-safe; `RedisClient` serialises every use on its own
/// thread, which is what makes the unchecked `Sendable` sound.
package final class RedisConnection: @unchecked Sendable {
    private let context: UnsafeMutablePointer<redisContext>

    package init(endpoint: RedisEndpoint, connectTimeout: Duration, commandTimeout: Duration) throws(RedisError) {
        let connected: UnsafeMutablePointer<redisContext>? = switch endpoint {
        case .tcp(let host, let port): redisConnectWithTimeout(host, Int32(port), connectTimeout.timeval)
        case .unix(let path): redisConnectUnixWithTimeout(path, connectTimeout.timeval)
        }
        guard let connected else { throw RedisError(kind: .connect, message: "hiredis could not allocate a context") }
        if connected.pointee.err != 0 {
            let message = Self.errorString(connected)
            redisFree(connected)
            throw RedisError(kind: .connect, message: "cannot connect to \(endpoint): \(message)")
        }
        context = connected
        redisSetTimeout(context, commandTimeout.timeval)
    }

    deinit {
        redisFree(context)
    }

    /// Whether the connection is unusable after an I/O error or timeout.
    package var isBroken: Bool { context.pointee.err != 0 }

    /// Sends all commands, then reads one reply each: one network round trip for the batch.
    package func pipeline(_ commands: RedisCommands) throws(RedisError) -> [RedisValue] {
        if commands.isEmpty { return [] }
        let appended = commands.bytes.withUnsafeReadableBytes { encoded in
            redisAppendFormattedCommand(context, encoded.baseAddress?.assumingMemoryBound(to: CChar.self), encoded.count)
        }
        guard appended == 0 else { throw connectionError() }
        var replies: [RedisValue] = []
        replies.reserveCapacity(commands.count)
        for _ in 0..<commands.count {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(context, &raw) == 0, let raw else { throw connectionError() }
            let reply = raw.assumingMemoryBound(to: redisReply.self)
            replies.append(Self.value(reply))
            freeReplyObject(raw)
        }
        return replies
    }

    private func connectionError() -> RedisError {
        let message = Self.errorString(context)
        let timedOut = context.pointee.err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)
        return RedisError(kind: timedOut ? .timeout : .connection, message: timedOut ? "command timed out" : message)
    }

    private static func errorString(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// A hiredis reply as a `RedisValue` (also used by the reply fuzz target).
    package static func value(_ reply: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let node = reply.pointee
        func text() -> String {
            guard let pointer = node.str else { return "" }
            return String(decoding: UnsafeRawBufferPointer(start: pointer, count: node.len), as: UTF8.self)
        }
        switch node.type {
        case REDIS_REPLY_STRING: return .string(text())
        case REDIS_REPLY_STATUS: return .status(text())
        case REDIS_REPLY_ERROR: return .error(text())
        case REDIS_REPLY_INTEGER: return .integer(node.integer)
        case REDIS_REPLY_ARRAY:
            return .array((0..<node.elements).compactMap { index in node.element?[index].map(value) })
        default: return .null
        }
    }
}

extension Duration {
    package var timeval: Glibc.timeval {
        let (seconds, attoseconds) = components
        return Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
