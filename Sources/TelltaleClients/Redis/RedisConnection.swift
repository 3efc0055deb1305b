import CHiredis
import Glibc
import NIOCore
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

/// One connection to Redis: Telltale's own transport (a socket, in TLS when configured)
/// and hiredis' reply reader. Each C handle has one owner that frees it once: the socket
/// (`RedisSocket`), the TLS session (`RedisTLSSession`), the reader (`RedisReplyReader`);
/// the TLS context (`RedisTLSContext`) belongs to the client and outlives connections.
///
/// Every call blocks (within its timeouts); `RedisClient` makes them all on its own thread,
/// one at a time, which is what makes the unchecked `Sendable` sound.
package final class RedisConnection: @unchecked Sendable {
    private let transport: RedisTransport
    private let reader: RedisReplyReader
    private let commandTimeout: Duration
    /// Where replies are received; fed to the reader a slice at a time.
    private let buffer: UnsafeMutableRawBufferPointer
    private var broken = false
    private var receivedAny = false

    /// Bytes read from the socket per call.
    static let bufferSize = 64 << 10
    /// Bytes fed to the reader before asking it for replies. hiredis moves the unread rest of
    /// its buffer forward each time its replies have used 1 KiB of it: small slices keep that
    /// rest, and so the copying, small (64 KiB at once would copy about 16 times more).
    static let feedSlice = 4 << 10

    /// Connects within `connectTimeout` (and completes the TLS handshake within it again);
    /// each later wait for Redis may last `commandTimeout`. `tls` is the client's context:
    /// built once per client (`RedisTLSContexts.context(for:)`), not per connection.
    package init(endpoint: RedisEndpoint, connectTimeout: Duration, commandTimeout: Duration,
                 tls: RedisTLSContext? = nil) throws(RedisError) {
        reader = try RedisReplyReader()
        transport = try RedisTransport(endpoint: endpoint, connectTimeout: connectTimeout, tls: tls)
        self.commandTimeout = commandTimeout
        buffer = .allocate(byteCount: Self.bufferSize, alignment: 16)
    }

    /// A one-off connection with TLS settings of its own (its context is built here, files
    /// read included); a client that reconnects keeps its contexts in `RedisTLSContexts`.
    package convenience init(endpoint: RedisEndpoint, connectTimeout: Duration, commandTimeout: Duration,
                             tls settings: RedisTLSSettings?) throws(RedisError) {
        var context: RedisTLSContext?
        if let settings { context = try RedisTLSContext(settings) }
        try self.init(endpoint: endpoint, connectTimeout: connectTimeout, commandTimeout: commandTimeout, tls: context)
    }

    deinit {
        buffer.deallocate()
    }

    /// Whether the connection is unusable after an I/O error, a timeout or a malformed reply.
    package var isBroken: Bool { broken }

    /// Sends all commands, then reads one reply each: one network round trip for the batch.
    /// Replies are read while the commands are still being written, so neither side's
    /// buffers fill up. Fails if Redis makes no progress for `commandTimeout`.
    package func pipeline(_ commands: RedisCommands) throws(RedisError) -> [RedisValue] {
        if commands.isEmpty { return [] }
        guard !broken else { throw RedisError(kind: .connection, message: "the connection to \(transport.endpoint) is broken") }
        let result = commands.bytes.withUnsafeReadableBytes { bytes in
            Result { () throws(RedisError) in try exchange(bytes, replies: commands.count) }
        }
        guard case .failure(let error) = result else { return try result.get() }
        broken = true
        // A server that drops a client it refuses (a plain client on a TLS port, a TLS client
        // without the certificate it wants) does so before any reply.
        if !receivedAny, error.kind == .connection, let hint = transport.hintBeforeFirstReply {
            throw RedisError(kind: .connection, message: error.message + hint)
        }
        throw error
    }

    /// The most reply bytes one pipeline may bring: replies are all kept until the last.
    static let maxPipelineBytes = 512 << 20

    /// The longest a whole pipeline may take, `commandTimeout` × 5: a peer that trickles a
    /// byte now and then must not hold the client's thread for ever.
    static func pipelineLimit(_ commandTimeout: Duration) -> Duration {
        commandTimeout.components.seconds > 3600 ? commandTimeout : commandTimeout * 5
    }

    private func exchange(_ bytes: UnsafeRawBufferPointer, replies count: Int) throws(RedisError) -> [RedisValue] {
        var replies: [RedisValue] = []
        replies.reserveCapacity(count)
        var written = 0
        var receivedTotal = 0
        let overall = Deadline(after: Self.pipelineLimit(commandTimeout))
        reader.startPipeline()
        while replies.count < count {
            var progressed = false
            var events: Int16 = 0
            if written < bytes.count {
                switch try transport.write(UnsafeRawBufferPointer(rebasing: bytes[written...])) {
                case .transferred(let sent):
                    written += sent
                    progressed = true
                case .wants(let wanted): events |= wanted
                case .closed(let reason): throw RedisError(kind: .connection, message: reason)
                }
            }
            switch try transport.read(into: buffer) {
            case .transferred(let received):
                receivedAny = true
                progressed = true
                receivedTotal += received
                guard receivedTotal <= Self.maxPipelineBytes else {
                    throw RedisError(kind: .connection, message: "replies larger than \(Self.maxPipelineBytes >> 20) MiB to one pipeline: refused")
                }
                var offset = 0
                while offset < received {
                    let slice = UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + min(Self.feedSlice, received - offset))])
                    try reader.feed(slice)
                    offset += slice.count
                    // Every reply ends with CRLF: without a line feed nothing can complete, and
                    // asking anyway would make hiredis rescan an unterminated line each time.
                    guard let start = slice.baseAddress, memchr(start, 0x0A, slice.count) != nil else { continue }
                    while replies.count < count, let reply = try reader.next() { replies.append(reply) }
                }
                if replies.count == count && (offset < received || reader.hasPendingBytes || written < bytes.count) {
                    throw RedisError(kind: .connection, message: "\(transport.endpoint) sent more replies than commands")
                }
            case .wants(let wanted): events |= wanted
            case .closed(let reason): throw RedisError(kind: .connection, message: reason)
            }
            if progressed { continue }
            switch transport.wait(for: events, until: Deadline(after: commandTimeout).earlier(overall)) {
            case .ready:
                guard overall.remainingMilliseconds > 0 else { throw RedisError(kind: .timeout, message: "pipeline timed out") }
            case .timedOut: throw RedisError(kind: .timeout, message: "command timed out")
            case .failed(let reason): throw RedisError(kind: .connection, message: reason)
            }
        }
        return replies
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
