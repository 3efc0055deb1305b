import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import Synchronization
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
/// every request head and every response end, the fast path's included. Two companions go
/// further towards the socket: one notices a request's first byte (the head timer starts
/// there), one reads the HTTP version, which the HTTP types lose (an HTTP/1.0 request without
/// keep-alive must have its connection closed after the response).
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limits: ConnectionLimits
    private let stats: ConnectionStats
    private var counted = false
    /// Between requests: no head is being read or answered.
    private var betweenRequests = true
    private var inFlight = 0
    private var idleTimer: Scheduled<Void>?
    private var headerTimer: Scheduled<Void>?

    init(limits: ConnectionLimits, stats: ConnectionStats) {
        self.limits = limits
        self.stats = stats
    }

    func handlerAdded(context: ChannelHandlerContext) {
        counted = true
        if stats.current.wrappingAdd(1, ordering: .relaxed).newValue > limits.maxConnections {
            stats.closed(.overLimit)
            context.close(promise: nil)
            return
        }
        let pipeline = context.pipeline.syncOperations
        try? pipeline.addHandler(FirstByteWatcher(guard: self, context: context), position: .first)
        if let codec = try? pipeline.handler(type: HTTP1ToHTTPServerCodec.self) {
            try? pipeline.addHandler(HTTP10Close(), position: .before(codec))
        }
        scheduleIdle(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
        if counted {
            counted = false
            stats.current.subtract(1, ordering: .relaxed)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            betweenRequests = false
            inFlight += 1
            idleTimer?.cancel()
            idleTimer = nil
            // A head without a first byte seen (pipelined behind the last request) gets its timer now.
            if headerTimer == nil { headerTimer = schedule(context, after: limits.headerTimeout, reason: .headerTimeout) }
        case .end:
            // The request is complete only now: a body announced and never sent must not hold
            // the connection (and a slot under the cap) for ever.
            headerTimer?.cancel()
            headerTimer = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            inFlight = max(0, inFlight - 1)
            if inFlight == 0 {
                betweenRequests = true
                scheduleIdle(context)
            }
        }
        context.write(data, promise: promise)
    }

    /// The first byte of a request arrived: its head must be complete within the header timeout.
    fileprivate func bytesArrived(_ context: ChannelHandlerContext) {
        guard betweenRequests, headerTimer == nil else { return }
        idleTimer?.cancel()
        idleTimer = nil
        headerTimer = schedule(context, after: limits.headerTimeout, reason: .headerTimeout)
    }

    private func scheduleIdle(_ context: ChannelHandlerContext) {
        cancelTimers()
        idleTimer = schedule(context, after: limits.idleTimeout, reason: .idleTimeout)
    }

    private func schedule(_ context: ChannelHandlerContext, after delay: Duration, reason: ConnectionStats.Reason) -> Scheduled<Void> {
        let stats = stats
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        return context.eventLoop.scheduleTask(in: TimeAmount(delay)) {
            stats.closed(reason)
            bound.value.close(promise: nil)
        }
    }

    private func cancelTimers() {
        idleTimer?.cancel()
        headerTimer?.cancel()
        idleTimer = nil
        headerTimer = nil
    }
}

/// Tells the guard when request bytes arrive, before any HTTP decoding.
private final class FirstByteWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private weak var connectionGuard: ConnectionGuard?
    private let guardContext: ChannelHandlerContext

    init(guard connectionGuard: ConnectionGuard, context: ChannelHandlerContext) {
        self.connectionGuard = connectionGuard
        guardContext = context
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connectionGuard?.bytesArrived(guardContext)
        context.fireChannelRead(data)
    }
}

/// An HTTP/1.0 request without `Connection: keep-alive` means one request per connection:
/// it gets `Connection: close`, so that both the fast path and Hummingbird close after the
/// response (the HTTP types that follow cannot tell the versions apart).
private final class HTTP10Close: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data), !head.isKeepAlive else {
            context.fireChannelRead(data)
            return
        }
        head.headers.replaceOrAdd(name: "connection", value: "close")
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }
}
