import Foundation
import Hummingbird
import Logging
import TelltaleMetrics

/// The HTTP endpoints: `/metrics`, `/healthz`, `/readyz` and the `/` status page.
enum HTTPServer {
    static func router(store: MetricStore, health: CollectorHealth, alerting: AlertingService?, auth: HTTPAuth?)
        -> Router<BasicRequestContext>
    {
        let router = Router()
        let guardian = AuthCheck(auth)

        router.get("metrics") { request, _ -> Response in
            if let denied = guardian.deny(request) { return denied }
            let format = ContentNegotiation.format(accept: request.headers[.accept])
            let acceptsGzip = ContentNegotiation.acceptsGzip(request.headers[.acceptEncoding])
            let body = store.scrape(format: format, acceptsGzip: acceptsGzip)
            var headers: HTTPFields = [.contentType: format.contentType, .vary: "Accept, Accept-Encoding"]
            if body.gzipped { headers[.contentEncoding] = "gzip" }
            return Response(status: .ok, headers: headers, body: body.gzipped ? ResponseBody(byteBuffer: body.joined) : ResponseBody(contentsOf: body.parts))
        }

        router.get("healthz") { _, _ in
            text(.ok, "ok\n")
        }

        router.get("readyz") { _, _ in
            let waiting = health.pending
            return waiting.isEmpty
                ? text(.ok, "ready\n")
                : text(.serviceUnavailable, "waiting for first run of: \(waiting.joined(separator: ", "))\n")
        }

        router.get("/") { request, _ -> Response in
            if let denied = guardian.deny(request) { return denied }
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: StatusPage.render(health.statuses, alerting: alerting?.status))))
        }
        return router
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Checks the `Authorization` header against the configured credentials, the secret part in
/// constant time (the scheme name is case-insensitive, as HTTP says).
struct AuthCheck: Sendable {
    private let scheme: String
    private let expected: [UInt8]?

    init(_ auth: HTTPAuth?) {
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
    func deny(_ request: Request) -> Response? {
        guard let expected else { return nil }
        let header = request.headers[.authorization] ?? ""
        let parts = header.split(separator: " ", maxSplits: 1)
        if parts.count == 2, parts[0].lowercased() == scheme.lowercased(),
           Self.constantTimeEqual(Array(parts[1].trimming(" ").utf8), expected) {
            return nil
        }
        var response = HTTPServer.text(.unauthorized, "unauthorized\n")
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
