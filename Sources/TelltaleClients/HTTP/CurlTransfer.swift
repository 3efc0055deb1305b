import CCurl
import TelltaleCore
import TelltaleMetrics

/// One outbound HTTP request.
public struct OutboundRequest: Sendable, Equatable {
    public var method = "GET"
    public var url: String
    /// `Name: value` lines. Values may be secrets: they are never logged.
    public var headers: [String] = []
    public var body: [UInt8]?
    public var connectTimeout = Duration.seconds(5)
    public var totalTimeout = Duration.seconds(10)
    public var maxBodyBytes = 10 << 20
    public var caFile: String?
    /// Redirects of GET and HEAD requests are followed only within the same origin (scheme,
    /// host and port): headers may carry credentials, and libcurl would send them to any
    /// host. Other methods never follow: a notification re-sent without its body is a lost
    /// one. A redirect not followed is returned as the response, for the caller to judge.
    public var followsRedirects = true
    /// False makes the request connect afresh and close the connection after it, as probes
    /// want: an endpoint refusing new connections must not look healthy over a kept one.
    /// Methods other than GET and HEAD never reuse one: libcurl sends a request again by
    /// itself when a kept connection fails under it, and a notification must not go out twice.
    public var reusesConnection = true

    public init(url: String) { self.url = url }

    /// GET or HEAD: what may follow a redirect, or go over a kept connection.
    var onlyReads: Bool { method == "GET" || method == "HEAD" }

    var mayReuseConnection: Bool { reusesConnection && onlyReads }
}

public struct OutboundResponse: Sendable {
    public let status: Int
    /// Header names lowercased; of the final response after redirects.
    public let headers: [String: String]
    public let body: [UInt8]
}

/// A failed exchange (an HTTP error status is a response, not this).
public struct OutboundHTTPError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case timeout, connect, tls
        /// The body exceeded the configured cap and was abandoned.
        case tooLarge = "too_large"
        case other = "http_error"
    }

    public let kind: Kind
    public let message: String
    public var description: String { message }
}

/// Owns one curl easy handle and its header list; both freed exactly once, in `deinit`.
/// The handle keeps its connections, DNS and TLS sessions from one request to the next (see
/// `HTTPClient`), while every request starts from libcurl's defaults. Used by one thread at a
/// time: unchecked Sendable so that `HTTPClient` can keep it between requests.
package final class CurlTransfer: @unchecked Sendable {
    /// libcurl's one-time set-up, before the first handle of any kind (HTTP or SMTP).
    static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()
    package static let userAgent = "telltale/\(TelltaleVersion.current)"
    package static let maxRedirects = 3
    /// Idle connections a handle keeps for later requests. Few: over TLS each holds its own
    /// parsed copy of the system's CA certificates (about 1 MiB with OpenSSL 3).
    package static let idleConnections = 2
    /// An idle connection older than this is not reused: longer than the default provider
    /// interval of 60 s, so a provider's polls share one (libcurl's default).
    package static let idleConnectionAge = Duration.seconds(118)
    /// No connection is reused once this old, so a changed DNS answer or a server taken out
    /// of rotation is followed within it.
    package static let connectionLifetime = Duration.seconds(300)

    private let handle: UnsafeMutableRawPointer
    private var headerList: UnsafeMutablePointer<curl_slist>?

    package init() throws(OutboundHTTPError) {
        _ = Self.globalInit
        guard let handle = curl_easy_init() else {
            throw OutboundHTTPError(kind: .other, message: "libcurl could not create a handle")
        }
        self.handle = handle
    }

    deinit {
        curl_slist_free_all(headerList)
        curl_easy_cleanup(handle)
    }

    /// Performs the request, following same-origin redirects of a GET or HEAD up to
    /// `maxRedirects`, all within the request's total timeout; any other redirect is returned.
    package func perform(_ request: OutboundRequest) throws(OutboundHTTPError) -> OutboundResponse {
        defer { forgetRequest() }
        var url = request.url
        let deadline = ContinuousClock.now + request.totalTimeout
        for hop in 0...Self.maxRedirects {
            let response = try performHop(request, url: url, until: deadline)
            guard (300..<400).contains(response.status), response.status != 304, hop < Self.maxRedirects,
                  request.followsRedirects, request.onlyReads,
                  let next = redirectTarget(), Self.origin(next) == Self.origin(request.url) else { return response }
            url = next
        }
        throw OutboundHTTPError(kind: .other, message: "unreachable")
    }

    /// One hop, on a kept connection when the request allows it. libcurl 7.88 takes a kept
    /// connection on which the server left an answer before closing it (a 408 for the idle
    /// connection) for a live one, and returns that answer as this request's: a 408 over a
    /// kept connection is asked again over a new one.
    private func performHop(_ request: OutboundRequest, url: String, until deadline: ContinuousClock.Instant)
        throws(OutboundHTTPError) -> OutboundResponse {
        var fresh = !request.mayReuseConnection
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw OutboundHTTPError(kind: .timeout, message: "timed out before a redirect or retry was done") }
            let response = try perform(request, url: url, timeout: remaining, fresh: fresh)
            guard response.status == 408, !fresh, !connectedAnew else { return response }
            fresh = true
        }
    }

    /// Whether the last transfer made a connection rather than using a kept one.
    private var connectedAnew: Bool {
        var connects = 0
        _ = telltale_curl_getinfo_long(handle, CURLINFO_NUM_CONNECTS, &connects)
        return connects > 0
    }

    /// The options point into the request's buffers, and its headers may hold secrets: none
    /// stay with the handle once the request is done. Without signals still: closing kept
    /// connections (at cleanup) must not touch the process' SIGPIPE handling.
    private func forgetRequest() {
        curl_easy_reset(handle)
        setLong(CURLOPT_NOSIGNAL, 1)
        curl_slist_free_all(headerList)
        headerList = nil
    }

    private func redirectTarget() -> String? {
        var target: UnsafeMutablePointer<CChar>?
        guard telltale_curl_getinfo_string(handle, CURLINFO_REDIRECT_URL, &target) == CURLE_OK, let target else { return nil }
        return String(cString: target)
    }

    /// `scheme://host:port` of an absolute URL, lower-cased, with the scheme's default port.
    package static func origin(_ url: String) -> String? {
        guard let separator = url.firstRange(of: "://") else { return nil }
        let scheme = url[..<separator.lowerBound].lowercased()
        var authority = url[separator.upperBound...].prefix { !"/?#".contains($0) }
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        let host = authority.lowercased()
        let portDigits = host.lastIndex(of: ":").map { host[host.index(after: $0)...] } ?? ""
        let hasPort = !portDigits.isEmpty && portDigits.allSatisfy(\.isASCII) && portDigits.allSatisfy(\.isNumber)
            && !(host.hasPrefix("[") && !host.hasSuffix("]" + portDigits))
        return "\(scheme)://\(host)" + (hasPort ? "" : (scheme == "https" ? ":443" : ":80"))
    }

    private func perform(_ request: OutboundRequest, url: String, timeout: Duration, fresh: Bool) throws(OutboundHTTPError)
        -> OutboundResponse {
        let sink = ResponseSink(cap: request.maxBodyBytes)
        let context = Unmanaged.passUnretained(sink).toOpaque()
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        curl_easy_reset(handle)  // nothing of the previous request or hop carries over
        let code: CURLcode = url.withCString { url in
            request.method.withCString { method in
                Self.userAgent.withCString { agent in
                    "http,https".withCString { protocols in
                        (request.caFile ?? "").withCString { caFile in
                            errorBuffer.withUnsafeMutableBufferPointer { errors in
                                withBody(request.body) { body, length in
                                    setLong(CURLOPT_NOSIGNAL, 1)  // signals are not safe in threads
                                    setLong(CURLOPT_MAXCONNECTS, Self.idleConnections)
                                    setLong(CURLOPT_MAXAGE_CONN, Int(Self.idleConnectionAge.components.seconds))
                                    setLong(CURLOPT_MAXLIFETIME_CONN, Int(Self.connectionLifetime.components.seconds))
                                    setLong(CURLOPT_FRESH_CONNECT, fresh ? 1 : 0)
                                    setLong(CURLOPT_FORBID_REUSE, request.mayReuseConnection ? 0 : 1)
                                    setPointer(CURLOPT_URL, url)
                                    setPointer(CURLOPT_CUSTOMREQUEST, method)
                                    setPointer(CURLOPT_USERAGENT, agent)
                                    setPointer(CURLOPT_PROTOCOLS_STR, protocols)
                                    setLong(CURLOPT_FOLLOWLOCATION, 0)  // see perform(_:)
                                    setLong(CURLOPT_SSL_VERIFYPEER, 1)
                                    setLong(CURLOPT_SSL_VERIFYHOST, 2)
                                    if request.caFile != nil { setPointer(CURLOPT_CAINFO, caFile) }
                                    setLong(CURLOPT_CONNECTTIMEOUT_MS, Int(request.connectTimeout.milliseconds))
                                    setLong(CURLOPT_TIMEOUT_MS, Int(timeout.milliseconds))
                                    setLong(CURLOPT_NOBODY, request.method == "HEAD" ? 1 : 0)
                                    setPointer(CURLOPT_ACCEPT_ENCODING, "")  // any encoding libcurl decodes
                                    setPointer(CURLOPT_ERRORBUFFER, errors.baseAddress)
                                    setHeaders(request.headers)
                                    if let body {
                                        setPointer(CURLOPT_POSTFIELDS, body)
                                        _ = telltale_curl_setopt_offset(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(length))
                                    }
                                    _ = telltale_curl_setopt_callback(handle, CURLOPT_WRITEFUNCTION, ResponseSink.writeBody)
                                    setPointer(CURLOPT_WRITEDATA, context)
                                    _ = telltale_curl_setopt_callback(handle, CURLOPT_HEADERFUNCTION, ResponseSink.writeHeader)
                                    setPointer(CURLOPT_HEADERDATA, context)
                                    // Proxies come from http_proxy / https_proxy / no_proxy, as libcurl reads them.
                                    return curl_easy_perform(handle)
                                }
                            }
                        }
                    }
                }
            }
        }
        guard code == CURLE_OK else {
            throw Self.error(code, detail: String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self), tooLarge: sink.exceeded)
        }
        var status = 0
        _ = telltale_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return OutboundResponse(status: status, headers: sink.headers, body: sink.body)
    }

    private func setLong(_ option: CURLoption, _ value: Int) {
        _ = telltale_curl_setopt_long(handle, option, value)
    }

    private func setPointer(_ option: CURLoption, _ value: UnsafeRawPointer?) {
        _ = telltale_curl_setopt_pointer(handle, option, value)
    }

    /// Sets the request's headers, once per hop: the list is built afresh, not appended to.
    private func setHeaders(_ headers: [String]) {
        curl_slist_free_all(headerList)
        headerList = nil
        for header in headers { headerList = curl_slist_append(headerList, header) }
        if let headerList { setPointer(CURLOPT_HTTPHEADER, headerList) }
    }

    private static func error(_ code: CURLcode, detail: String, tooLarge: Bool) -> OutboundHTTPError {
        let message = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        if tooLarge { return OutboundHTTPError(kind: .tooLarge, message: "response body over the size cap") }
        switch code {
        case CURLE_OPERATION_TIMEDOUT: return OutboundHTTPError(kind: .timeout, message: message)
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            return OutboundHTTPError(kind: .connect, message: message)
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CACERT_BADFILE:
            return OutboundHTTPError(kind: .tls, message: message)
        default: return OutboundHTTPError(kind: .other, message: message)
        }
    }
}

/// libcurl's `CURLOPT_POSTFIELDS` wants a pointer that stays valid during the transfer.
private func withBody<R>(_ body: [UInt8]?, _ work: (UnsafeRawPointer?, Int) -> R) -> R {
    guard let body else { return work(nil, 0) }
    return body.withUnsafeBytes { work($0.baseAddress, $0.count) }
}

/// Collects the response for the C callbacks, which reach it through an opaque pointer.
private final class ResponseSink {
    let cap: Int
    var body: [UInt8] = []
    var headers: [String: String] = [:]
    var exceeded = false

    init(cap: Int) { self.cap = cap }

    static let writeBody: telltale_curl_data_callback = { data, size, count, context in
        guard let data, let context else { return 0 }
        let sink = Unmanaged<ResponseSink>.fromOpaque(context).takeUnretainedValue()
        let length = size * count
        // Returning less than was given makes libcurl abort the transfer.
        guard sink.body.count + length <= sink.cap else {
            sink.exceeded = true
            return 0
        }
        sink.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: length))
        return length
    }

    static let writeHeader: telltale_curl_data_callback = { data, size, count, context in
        guard let data, let context else { return 0 }
        let sink = Unmanaged<ResponseSink>.fromOpaque(context).takeUnretainedValue()
        let length = size * count
        let line = String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
        if line.hasPrefix("HTTP/") {
            sink.headers = [:]  // a new response (after a redirect or 100 Continue)
        } else if let colon = line.firstIndex(of: ":") {
            sink.headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimming(" \t\r\n")
        }
        return length
    }
}
