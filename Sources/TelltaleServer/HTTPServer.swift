import Foundation
import Hummingbird
import Logging
import TelltaleAlerting
import TelltaleCore
import TelltaleMetrics

/// The HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, `/-/reload` and the `/` status page.
package enum HTTPServer {
    /// `reload` applies the configuration file again and returns nil or why it failed; nil
    /// when the lifecycle endpoints are off (`--web.enable-lifecycle` not given).
    package static func router(metrics: MetricsEndpoint, health: CollectorHealth, alerting: AlertingService?,
                               reload: (@Sendable () async -> String?)? = nil) -> Router<BasicRequestContext>
    {
        // HEAD answers every GET route with the GET response's headers and no body.
        let router = Router(options: .autoGenerateHeadEndpoints)

        // Normally answered by `MetricsFastPath` before the router sees it; this route takes the
        // requests the fast path passes on (pipelined behind another request, `Connection: close`).
        router.get("metrics") { request, _ -> Response in
            metrics.answer(request.headers).response
        }

        router.get("healthz") { _, _ in
            PlainResponse.text(.ok, "ok\n").response
        }

        router.get("readyz") { request, _ in
            let waiting = health.pending
            if waiting.isEmpty { return PlainResponse.text(.ok, "ready\n").response }
            // Collector names only for whoever may see `/`: they describe the deployment.
            let names = metrics.guardian.deny(request.headers) == nil ? ": " + waiting.joined(separator: ", ") : ""
            return PlainResponse.text(.serviceUnavailable, "waiting for first run of collectors\(names)\n").response
        }

        // As Prometheus: POST or PUT, 403 unless enabled, 500 with the problems when the new
        // configuration is refused (the running one stays).
        let reloadHandler = { @Sendable (request: Request, _: BasicRequestContext) async -> Response in
            if let denied = metrics.guardian.deny(request.headers) { return denied.response }
            guard let reload else { return PlainResponse.text(.forbidden, "Lifecycle API is not enabled.\n").response }
            guard let problem = await reload() else { return PlainResponse.text(.ok, "configuration reloaded\n").response }
            return PlainResponse.text(.internalServerError, "failed to reload config: \(problem)\n").response
        }
        router.post("-/reload", use: reloadHandler)
        router.put("-/reload", use: reloadHandler)

        let report = { @Sendable in
            StatusReport(collectors: health.statuses, snapshot: metrics.store.snapshot, alerting: alerting?.status, now: .now)
        }
        router.get("/") { request, _ -> Response in
            if let denied = metrics.guardian.deny(request.headers) { return denied.response }
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: StatusPage.render(report()))))
        }

        router.get("api/v1/status") { request, _ -> Response in
            if let denied = metrics.guardian.deny(request.headers) { return denied.response }
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: StatusReport.json(report()))))
        }
        return router
    }
}

/// A complete response held as plain values, so that the router and the event-loop fast
/// path send the same bytes.
struct PlainResponse {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    var body: [ByteBuffer]

    static func text(_ status: HTTPResponse.Status, _ text: String) -> PlainResponse {
        PlainResponse(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: [ByteBuffer(string: text)])
    }

    /// A HEAD answer: the same headers, the GET body's length, no body.
    mutating func omitBody() {
        headers[.contentLength] = String(body.reduce(0) { $0 + $1.readableBytes })
        body = []
    }

    var response: Response {
        Response(status: status, headers: headers,
                 body: body.count == 1 ? ResponseBody(byteBuffer: body[0]) : ResponseBody(contentsOf: body))
    }
}

/// `GET /metrics`: content negotiation, gzip and auth around the store's cached exposition.
package struct MetricsEndpoint: Sendable {
    let store: MetricStore
    let guardian: AuthCheck

    func answer(_ headers: HTTPFields) -> PlainResponse {
        if let denied = guardian.deny(headers) { return denied }
        let format = ContentNegotiation.format(accept: headers[.accept])
        let acceptsGzip = ContentNegotiation.acceptsGzip(headers[.acceptEncoding])
        let body = store.scrape(format: format, acceptsGzip: acceptsGzip)
        var responseHeaders: HTTPFields = [.contentType: format.contentType, .vary: "Accept, Accept-Encoding"]
        if body.gzipped { responseHeaders[.contentEncoding] = "gzip" }
        // A gzip body is a few small buffers around the cached chunks: one write is cheaper.
        return PlainResponse(status: .ok, headers: responseHeaders, body: body.gzipped ? [body.joined] : body.parts)
    }

    package init(store: MetricStore, guardian: AuthCheck) {
        self.store = store
        self.guardian = guardian
    }
}

/// Checks the `Authorization` header against the configured credentials, the secret part in
/// constant time (the scheme name is case-insensitive, as HTTP says).
package struct AuthCheck: Sendable {
    private let scheme: String
    private let expected: [UInt8]?

    package init(_ auth: HTTPAuth?) {
        switch auth {
        case .bearer(let token):
            scheme = "Bearer"
            expected = Array(token.utf8)
        case .basic(let username, let password):
            scheme = "Basic"
            expected = Array(Data("\(username):\(password)".utf8).base64EncodedString().utf8)
        case nil:
            scheme = ""
            expected = nil
        }
    }

    /// A 401 response when credentials are required and missing or wrong; nil to let the request through.
    func deny(_ headers: HTTPFields) -> PlainResponse? {
        guard let expected else { return nil }
        let header = headers[.authorization] ?? ""
        let parts = header.split(separator: " ", maxSplits: 1)
        if parts.count == 2, parts[0].lowercased() == scheme.lowercased(),
           Self.constantTimeEqual(Array(parts[1].trimming(" ").utf8), expected) {
            return nil
        }
        var response = PlainResponse.text(.unauthorized, "unauthorized\n")
        response.headers[.wwwAuthenticate] = "\(scheme) realm=\"telltale\""
        return response
    }

    static func constantTimeEqual(_ left: [UInt8], _ right: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: left.count ^ right.count)
        for index in 0..<max(left.count, right.count) {
            let a = index < left.count ? left[index] : 0
            let b = index < right.count ? right[index] : 0
            difference |= a ^ b
        }
        return difference == 0
    }
}
