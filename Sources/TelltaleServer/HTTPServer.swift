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
        router.add(middleware: ResponseHeadersMiddleware(guardian: metrics.guardian))

        router.get("metrics") { request, _ -> Response in
            if let denied = await metrics.guardian.deny(request.headers) { return denied.response }
            return metrics.answer(request.headers).response
        }

        router.get("healthz") { _, _ in
            PlainResponse.text(.ok, "ok\n").response
        }

        router.get("readyz") { request, _ in
            let waiting = health.notReady
            if waiting.isEmpty { return PlainResponse.text(.ok, "ready\n").response }
            // Collector names only for whoever may see `/`: they describe the deployment.
            let names = await metrics.guardian.deny(request.headers) == nil ? ": " + waiting.joined(separator: ", ") : ""
            return PlainResponse.text(.serviceUnavailable, "waiting for first run of collectors\(names)\n").response
        }

        // As Prometheus: POST or PUT, 403 unless enabled, 500 with the problems when the new
        // configuration is refused (the running one stays).
        let reloadHandler = { @Sendable (request: Request, _: BasicRequestContext) async -> Response in
            if let denied = await metrics.guardian.deny(request.headers) { return denied.response }
            guard let reload else { return PlainResponse.text(.forbidden, "Lifecycle API is not enabled.\n").response }
            guard let problem = await reload() else { return PlainResponse.text(.ok, "configuration reloaded\n").response }
            return PlainResponse.text(.internalServerError, "failed to reload config: \(problem)\n").response
        }
        router.post("-/reload", use: reloadHandler)
        router.put("-/reload", use: reloadHandler)
        router.get("-/reload") { _, _ in
            var refusal = PlainResponse.text(.methodNotAllowed, "use POST or PUT\n")
            refusal.headers[.allow] = "POST, PUT"
            return refusal.response
        }

        let report = { @Sendable in
            StatusReport(collectors: health.statuses, snapshot: metrics.store.snapshot, alerting: alerting?.status, now: .now)
        }
        router.get("/") { request, _ -> Response in
            if let denied = await metrics.guardian.deny(request.headers) { return denied.response }
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: StatusPage.render(report()))))
        }

        router.get("api/v1/status") { request, _ -> Response in
            if let denied = await metrics.guardian.deny(request.headers) { return denied.response }
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: StatusReport.json(report()))))
        }
        return router
    }
}

/// A complete response held as plain values, so that the router and the event-loop fast
/// path send the same bytes.
package struct PlainResponse: Sendable {
    package var status: HTTPResponse.Status
    package var headers: HTTPFields
    package var body: [ByteBuffer]

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

/// `GET /metrics`: content negotiation and gzip around the store's cached exposition, for a
/// request `guardian` let through.
package struct MetricsEndpoint: Sendable {
    let store: MetricStore
    let guardian: RequestGuard

    func answer(_ headers: HTTPFields) -> PlainResponse {
        let format = ContentNegotiation.format(accept: headers[.accept])
        let acceptsGzip = ContentNegotiation.acceptsGzip(headers[.acceptEncoding])
        let body = store.scrape(format: format, acceptsGzip: acceptsGzip)
        var responseHeaders: HTTPFields = [.contentType: format.contentType, .vary: "Accept, Accept-Encoding"]
        if body.gzipped { responseHeaders[.contentEncoding] = "gzip" }
        return PlainResponse(status: .ok, headers: responseHeaders, body: body.parts)
    }

    package init(store: MetricStore, guardian: RequestGuard) {
        self.store = store
        self.guardian = guardian
    }
}

/// Adds the web configuration's headers (`http_server_config.headers`) to every response the
/// router gives, errors such as 404 included.
struct ResponseHeadersMiddleware: RouterMiddleware {
    let guardian: RequestGuard

    func handle(_ request: Request, context: BasicRequestContext, next: (Request, BasicRequestContext) async throws -> Response)
        async throws -> Response
    {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        }
        guardian.addResponseHeaders(to: &response.headers)
        return response
    }
}
