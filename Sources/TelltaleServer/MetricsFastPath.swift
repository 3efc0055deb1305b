import Glibc
import Hummingbird
import NIOCore
import NIOHTTPTypes
import TelltaleAlerting
import TelltaleCore
import TelltaleMetrics

/// Answers `GET /metrics` on the connection's event loop.
///
/// Hummingbird hands every request to a Swift concurrency task and the response back to the
/// event loop: two thread wake-ups that, on an idle server, cost about as much as the rest of
/// a scrape. The exposition is already rendered and cached, so nothing here needs to wait,
/// and this handler answers from the channel pipeline directly with the same
/// `MetricsEndpoint` the router uses.
///
/// Everything else goes on to Hummingbird unchanged, and so does a `/metrics` request that
/// arrives while an earlier request on the connection is still being answered there, which
/// keeps pipelined responses in request order. `Connection: close` is left to Hummingbird too.
package final class MetricsFastPath: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = HTTPRequestPart
    package typealias InboundOut = HTTPRequestPart
    package typealias OutboundIn = HTTPResponsePart
    package typealias OutboundOut = HTTPResponsePart

    private let endpoint: MetricsEndpoint
    /// The request being answered here, from its head until its end arrives, with the
    /// refusal to send instead of the exposition when its credentials are wrong.
    private var answering: (request: HTTPRequest, refusal: PlainResponse?)?
    /// Requests passed on to Hummingbird whose response has not ended yet.
    private var passedOn = 0

    package init(endpoint: MetricsEndpoint) {
        self.endpoint = endpoint
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch part {
        case .head(let request) where passedOn == 0 && Self.isPlainMetricsRequest(request):
            switch endpoint.guardian.decide(request.headerFields) {
            case .allow: answering = (request, nil)
            case .deny(let refusal): answering = (request, refusal)
            case .needsCheck:
                // A bcrypt check must not run on the event loop: the router's task does it.
                passedOn += 1
                context.fireChannelRead(data)
            }
        case .head:
            passedOn += 1
            context.fireChannelRead(data)
        case .body where answering != nil:
            break  // a GET body means nothing; drop it
        case .end where answering != nil:
            let (request, refusal) = answering!
            answering = nil
            var response = refusal ?? endpoint.answer(request.headerFields)
            if request.method == .head { response.omitBody() }
            respond(context: context, response)
        case .body, .end:
            context.fireChannelRead(data)
        }
    }

    package func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { passedOn = max(0, passedOn - 1) }
        context.write(data, promise: promise)
    }

    private func respond(context: ChannelHandlerContext, _ plain: PlainResponse) {
        var headers = plain.headers
        headers[.contentLength] = headers[.contentLength] ?? String(plain.body.reduce(0) { $0 + $1.readableBytes })
        headers[.date] = HTTPDate.now()
        headers[.server] = "telltale"
        endpoint.guardian.addResponseHeaders(to: &headers)
        context.write(wrapOutboundOut(.head(HTTPResponse(status: plain.status, headerFields: headers))), promise: nil)
        for buffer in plain.body { context.write(wrapOutboundOut(.body(buffer)), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// `GET` or `HEAD /metrics` (a query string or trailing slash allowed, as the router
    /// allows them) on a connection that stays open.
    static func isPlainMetricsRequest(_ request: HTTPRequest) -> Bool {
        guard request.method == .get || request.method == .head, let path = request.path else { return false }
        let route = path.prefix { $0 != "?" }
        guard route == "/metrics" || route == "/metrics/" else { return false }
        return !(request.headerFields[.connection]?.lowercased().contains("close") ?? false)
    }
}

/// The `Date` header's IMF-fixdate (RFC 9110), e.g. `Sat, 21 Nov 2026 19:42:42 GMT`.
enum HTTPDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func now() -> String { format(time(nil)) }

    static func format(_ seconds: time_t) -> String {
        var clock = seconds
        var parts = tm()
        gmtime_r(&clock, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
