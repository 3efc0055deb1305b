import Glibc
import TelltaleAlerting
import TelltaleCore
import TelltaleMetrics

/// Where the HTTP server listens.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public static let defaultPort = 9839
    public let host: String
    public let port: Int

    /// Parses `HOST:PORT`, `:PORT` (all interfaces) or `[IPv6]:PORT`; nil if `parse` finds a problem.
    public init?(_ text: String) {
        guard let address = try? Self.parse(text) else { return nil }
        self = address
    }

    private init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Accepts exactly what `serve` can bind: an IPv4 literal, a bracketed IPv6 literal or a
    /// DNS name. Anything else (`[::1:9839`, a bare IPv6 address, `999.1.1.1`) must fail
    /// `check-config` with a message saying what is wrong, not `serve` with a socket error.
    public static func parse(_ text: String) throws(ListenAddressError) -> ListenAddress {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (1...65535).contains(port) else {
            throw ListenAddressError("expected HOST:PORT with a port from 1 to 65535, got \"\(text)\"")
        }
        let written = String(text[..<colon])
        if written.hasPrefix("[") || written.hasSuffix("]") {
            let host = String(written.dropFirst().dropLast())
            guard written.hasPrefix("["), written.hasSuffix("]"), isAddress(host, family: AF_INET6) else {
                throw ListenAddressError("expected [IPv6]:PORT with an IPv6 address between the brackets, got \"\(text)\"")
            }
            return ListenAddress(host: host, port: port)
        }
        let host = written.isEmpty ? "0.0.0.0" : written
        guard isAddress(host, family: AF_INET) || isHostName(host) else {
            throw ListenAddressError(
                "expected HOST:PORT with HOST an IPv4 address or a DNS name ([IPv6]:PORT for IPv6), got \"\(text)\"")
        }
        return ListenAddress(host: host, port: port)
    }

    private static func isAddress(_ text: String, family: Int32) -> Bool {
        var storage = in6_addr()
        return inet_pton(family, text, &storage) == 1
    }

    /// Letters, digits and hyphens in dot-separated labels of 1 to 63 characters (RFC 1123).
    /// The last label may not be all digits: `999.1.1.1` or `1.2.3` is a mistyped address,
    /// which the resolver would reject or read as another address. No trailing dot either:
    /// the resolver does not find `localhost.` in /etc/hosts.
    private static func isHostName(_ text: String) -> Bool {
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        guard text.utf8.count <= 253, let last = labels.last, !last.allSatisfy(\.isNumber) else { return false }
        return labels.allSatisfy { label in
            (1...63).contains(label.count) && label.first != "-" && label.last != "-"
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// What is wrong with a listen address, for `server.listen` and `--listen`.
public struct ListenAddressError: Error, CustomStringConvertible {
    public let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Optional protection of `/metrics` and `/`. The description never shows the secret.
public enum HTTPAuth: Sendable, Equatable, CustomStringConvertible {
    case bearer(token: String)
    case basic(username: String, password: String)

    public var description: String {
        switch self {
        case .bearer: "bearer token"
        case .basic(let username, _): "basic auth for \(username)"
        }
    }
}

public struct ServerConfig: Sendable, Equatable {
    public var listen = ListenAddress(":\(ListenAddress.defaultPort)")!
    public var auth: HTTPAuth?
    public var limits = ConnectionLimits()
    /// From `--web.config.file`: TLS, bcrypt users and response headers.
    public var webConfig: WebConfig?

    public init() {}
}

extension ServerConfig {
    /// Adds the web configuration, which may not give users when `server.auth` does.
    public mutating func use(_ web: WebConfig) throws(ConfigErrors) {
        if !web.users.isEmpty && auth != nil {
            throw ConfigErrors(problems: ["server.auth: set either server.auth or basic_auth_users in \(web.path), not both"])
        }
        webConfig = web
    }

    package mutating func read(_ map: ConfigMap) {
        if let text = map.string("listen") {
            do {
                listen = try ListenAddress.parse(text)
            } catch {
                map.problems.add(map.childPath("listen"), error.description)
            }
        }
        if let auth = map.map("auth") {
            self.auth = HTTPAuth.read(auth)
            auth.finish()
        }
        if let cap = map.int("max_connections", in: 1...1_000_000) { limits.maxConnections = cap }
        if let timeout = map.duration("idle_timeout") { limits.idleTimeout = timeout }
        if let timeout = map.duration("header_timeout") { limits.headerTimeout = timeout }
        map.finish()
    }
}

extension HTTPAuth {
    static func read(_ map: ConfigMap) -> HTTPAuth? {
        let token = map.secret("bearer_token")
        let basic = map.map("basic")
        defer { basic?.finish() }
        switch (token, basic) {
        case (let token?, nil):
            guard !token.isEmpty else {
                map.problems.add(map.childPath("bearer_token"), "must not be empty")
                return nil
            }
            return .bearer(token: token)
        case (nil, let basic?):
            let username = basic.string("username")
            let password = basic.secret("password")
            guard let username, let password, !password.isEmpty else {
                map.problems.add(basic.path, "needs username and a non-empty password (or password_file)")
                return nil
            }
            return .basic(username: username, password: password)
        case (nil, nil):
            // A key that is present but unusable (an unset ${VAR}) has reported its own problem.
            if !map.has("bearer_token") && !map.has("bearer_token_file") && !map.has("basic") {
                map.problems.add(map.path, "set bearer_token (or bearer_token_file) or basic")
            }
            return nil
        case (_?, _?):
            map.problems.add(map.path, "set bearer_token or basic, not both")
            return nil
        }
    }
}
