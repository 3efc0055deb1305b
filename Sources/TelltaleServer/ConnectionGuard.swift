import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import Synchronization
import TelltaleAlerting
import TelltaleCore
import TelltaleMetrics

/// Limits on the server's connections, from `server:` in the configuration.
public struct ConnectionLimits: Sendable, Equatable {
    /// Connections served at once; beyond it a new connection is closed as soon as it is
    /// accepted, while established ones (Prometheus' keep-alive scrapes) go on.
    public var maxConnections = 512
    /// A kept-alive connection with no request for this long is closed.
    public var idleTimeout = Duration.seconds(120)
    /// A request, head and body, must be complete this long after its first byte (against
    /// slowloris, and a body announced and never sent).
    public var headerTimeout = Duration.seconds(10)
}

/// Counts of the server's connections, shown as self-metrics.
public final class ConnectionStats: Sendable {
    static let open = MetricDescriptor("telltale_http_connections", .gauge, help: "HTTP connections open now.")
    static let closed = MetricDescriptor(
        "telltale_http_connections_closed", .counter,
        help: "HTTP connections Telltale closed itself, by reason: over_limit, idle_timeout, header_timeout.")

    let current = Atomic<Int>(0)
    private let overLimit = Atomic<Int>(0)
    private let idle = Atomic<Int>(0)
    private let header = Atomic<Int>(0)

    public init() {}

    enum Reason: String {
        case overLimit = "over_limit", idleTimeout = "idle_timeout", headerTimeout = "header_timeout"
    }

    func closed(_ reason: Reason) {
        switch reason {
        case .overLimit: overLimit.add(1, ordering: .relaxed)
        case .idleTimeout: idle.add(1, ordering: .relaxed)
        case .headerTimeout: header.add(1, ordering: .relaxed)
        }
    }

    public var families: [MetricFamily] {
        var open = FamilyBuilder(Self.open)
        open.set(Double(current.load(ordering: .relaxed)))
        var closed = FamilyBuilder(Self.closed)
        closed.set(Double(header.load(ordering: .relaxed)), ["reason": Reason.headerTimeout.rawValue])
        closed.set(Double(idle.load(ordering: .relaxed)), ["reason": Reason.idleTimeout.rawValue])
        closed.set(Double(overLimit.load(ordering: .relaxed)), ["reason": Reason.overLimit.rawValue])
        return [open.build(), closed.build()]
    }
}

/// Enforces `ConnectionLimits` on one connection, on its event loop, without blocking it.
///
/// It sits first among the handlers after HTTP decoding, before `MetricsFastPath`, so it sees
/// every request and every response end, the fast path's included. Two companions go
/// further towards the socket: one notices a request's first byte (the request timer starts
/// there), one reads the HTTP version, which the HTTP types lose (an HTTP/1.0 request without
/// keep-alive must have its connection closed after the response).
///
/// Requests only note the time; one repeating check per connection compares it with the
/// limits, so a scrape costs two clock reads rather than timers scheduled and cancelled.
package final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = HTTPRequestPart
    package typealias InboundOut = HTTPRequestPart
    package typealias OutboundIn = HTTPResponsePart
    package typealias OutboundOut = HTTPResponsePart

    private let limits: ConnectionLimits
    private let stats: ConnectionStats
    private var counted = false
    /// Requests whose head arrived and whose end did not yet.
    private var incomplete = 0
    /// Requests not yet answered to the end.
    private var unanswered = 0
    /// Since when a request is being read (its first byte), if one is.
    private var readingSince: NIODeadline?
    /// Since when the connection has had nothing to do, if it has nothing to do.
    private var idleSince: NIODeadline? = .now()
    private var check: RepeatedTask?

    package init(limits: ConnectionLimits, stats: ConnectionStats) {
        self.limits = limits
        self.stats = stats
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        counted = true
        if stats.current.wrappingAdd(1, ordering: .relaxed).newValue > limits.maxConnections {
            stats.closed(.overLimit)
            context.close(promise: nil)
            return
        }
        let pipeline = context.pipeline.syncOperations
        try? pipeline.addHandler(FirstByteWatcher(guard: self), position: .first)
        if let codec = try? pipeline.handler(type: HTTP1ToHTTPServerCodec.self) {
            try? pipeline.addHandler(HTTP10Semantics(), position: .before(codec))
        }
        // Checked at a quarter of the shorter limit: a connection is closed at most that late.
        let period = TimeAmount(max(.milliseconds(100), min(limits.headerTimeout, limits.idleTimeout) / 4))
        let bound = NIOLoopBound((guard: self, context: context), eventLoop: context.eventLoop)
        check = context.eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
            bound.value.guard.enforce(bound.value.context)
        }
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
        if counted {
            counted = false
            stats.current.subtract(1, ordering: .relaxed)
        }
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            incomplete += 1
            unanswered += 1
            idleSince = nil
            if readingSince == nil { readingSince = .now() }  // pipelined: no first byte was noticed
        case .end:
            // Complete only now: a body announced and never sent must not hold the connection
            // (and a slot under the cap) for ever.
            incomplete = max(0, incomplete - 1)
            if incomplete == 0 { readingSince = nil }
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    package func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            unanswered = max(0, unanswered - 1)
            if unanswered == 0 && readingSince == nil { idleSince = .now() }
        }
        context.write(data, promise: promise)
    }

    /// Request bytes arrived: a request started, unless one is being read already.
    fileprivate func bytesArrived() {
        idleSince = nil
        if readingSince == nil && incomplete == 0 && unanswered == 0 { readingSince = .now() }
    }

    private func enforce(_ context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        if let readingSince, now - readingSince > TimeAmount(limits.headerTimeout) {
            close(context, .headerTimeout)
        } else if let idleSince, now - idleSince > TimeAmount(limits.idleTimeout) {
            close(context, .idleTimeout)
        }
    }

    private func close(_ context: ChannelHandlerContext, _ reason: ConnectionStats.Reason) {
        check?.cancel()
        check = nil
        stats.closed(reason)
        context.close(promise: nil)
    }
}

/// Tells the guard when request bytes arrive, before any HTTP decoding.
private final class FirstByteWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private weak var connectionGuard: ConnectionGuard?

    init(guard connectionGuard: ConnectionGuard) {
        self.connectionGuard = connectionGuard
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connectionGuard?.bytesArrived()
        context.fireChannelRead(data)
    }
}

/// HTTP/1.0 semantics, which the version-less HTTP types after the codec cannot keep.
///
/// A request that does not keep the connection alive (HTTP/1.0 without `Connection:
/// keep-alive`, or any `Connection: close`) reaches the fast path and Hummingbird with
/// exactly `Connection: close`, which both of them honour by closing after the response.
/// Each response goes out with its request's version (an HTTP/1.0 client is never sent a
/// chunked body) and a `Connection` header saying what the server does: `close`, or for
/// HTTP/1.0 `keep-alive`, without which such a client would not reuse the connection.
private final class HTTP10Semantics: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// The requests not answered yet, in order: pipelined responses follow them.
    private var unanswered = CircularBuffer<(version: HTTPVersion, keepAlive: Bool)>()
    /// The response being written needs the connection closed after it (see `write`).
    private var closeAfterResponse = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else {
            context.fireChannelRead(data)
            return
        }
        unanswered.append((head.version, head.isKeepAlive))
        if !head.isKeepAlive { head.headers.replaceOrAdd(name: "connection", value: "close") }
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        // A 1xx response is not the answer; a 400 for bytes that never made a head has no request.
        case .head(var head) where head.status.code >= 200 && !unanswered.isEmpty:
            let request = unanswered.removeFirst()
            head.version = request.version
            if !request.keepAlive {
                head.headers.replaceOrAdd(name: "connection", value: "close")
            } else if request.version == .http1_0 {
                // HTTP/1.0 has no chunking: without a length only closing ends the body.
                closeAfterResponse = !head.headers.contains(name: "content-length")
                head.headers.replaceOrAdd(name: "connection", value: closeAfterResponse ? "close" : "keep-alive")
            }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end where closeAfterResponse:
            closeAfterResponse = false
            context.writeAndFlush(data, promise: promise)
            context.close(promise: nil)
        default:
            context.write(data, promise: promise)
        }
    }
}
