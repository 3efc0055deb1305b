import Foundation
import HTTPTypes
import Synchronization
import TelltaleCore
import TelltaleMetrics

/// Who may read `/metrics`, `/`, `/api/v1/status` and `/-/reload`, and the headers every
/// answer carries. Credentials come from `server.auth` (a bearer token or one basic-auth
/// user, compared in constant time) or from the web configuration's `basic_auth_users`
/// (bcrypt hashes); a reload swaps them with `update`.
///
/// A bcrypt check takes tens of milliseconds by design, so it never runs on an event loop:
/// `decide` answers at once when it can (no credentials needed, a token, a password already
/// verified), and `deny` runs the rest on threads of its own, a few at a time, refusing
/// more than `maxPendingChecks` waiting checks with 429 (a flood of wrong passwords costs
/// those threads, not the scrapes). Verified passwords are remembered as salted SHA-256
/// digests, never as text, so that scrapes after the first cost no bcrypt.
package final class RequestGuard: Sendable {
    package enum Decision {
        case allow
        case deny(PlainResponse)
        /// Only a bcrypt check can tell: call `deny` from an async context.
        case needsCheck(user: String, password: String, hash: String)
    }

    private struct Credentials {
        var auth: HTTPAuth?
        var users: [String: String] = [:]
        var headers: [WebConfig.ResponseHeader] = []
    }

    static let maxPendingChecks = 32
    /// Verified passwords remembered at most; all are forgotten when full (and at each update).
    static let maxVerified = 1024
    /// Checked for unknown users, so that they take as long as known ones.
    static let unknownUserHash = "$2y$10$" + String(repeating: "x", count: 53)

    private let credentials: Mutex<Credentials>
    private let verified = Mutex<Set<[UInt8]>>([])
    private let salt = (0..<16).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined()
    private let checkThreads = BlockingThreads(count: 2)
    private let pendingChecks = Atomic<Int>(0)

    package init(auth: HTTPAuth?, web: WebConfig? = nil) {
        credentials = Mutex(Credentials(auth: auth, users: web?.users ?? [:], headers: web?.headers ?? []))
    }

    /// New credentials and headers (a reload). Verified passwords are forgotten.
    package func update(auth: HTTPAuth?, web: WebConfig?) {
        credentials.withLock { $0 = Credentials(auth: auth, users: web?.users ?? [:], headers: web?.headers ?? []) }
        verified.withLock { $0.removeAll() }
    }

    /// Sets the web configuration's headers, which every response carries.
    package func addResponseHeaders(to fields: inout HTTPFields) {
        for header in credentials.withLock({ $0.headers }) {
            if let name = HTTPField.Name(header.name) { fields[name] = header.value }
        }
    }

    /// The decision that needs no bcrypt check, or what to check.
    package func decide(_ headers: HTTPFields) -> Decision {
        let credentials = credentials.withLock { $0 }
        if let auth = credentials.auth { return Self.decide(headers, auth) }
        guard !credentials.users.isEmpty else { return .allow }
        guard let (user, password) = Self.basicCredentials(headers) else { return .deny(Self.unauthorized("Basic")) }
        let hash = credentials.users[user] ?? Self.unknownUserHash
        let known = verified.withLock { $0.contains(Bcrypt.digest([salt, user, password, hash])) }
        return known ? .allow : .needsCheck(user: user, password: password, hash: hash)
    }

    /// A response refusing the request, or nil to let it through; runs a bcrypt check off
    /// the event loops and the cooperative pool when one is needed.
    package func deny(_ headers: HTTPFields) async -> PlainResponse? {
        switch decide(headers) {
        case .allow: return nil
        case .deny(let response): return response
        case .needsCheck(let user, let password, let hash): return await check(user: user, password: password, hash: hash)
        }
    }

    private func check(user: String, password: String, hash: String) async -> PlainResponse? {
        let pending = pendingChecks.wrappingAdd(1, ordering: .relaxed).newValue
        defer { pendingChecks.wrappingSubtract(1, ordering: .relaxed) }
        guard pending <= Self.maxPendingChecks else {
            var response = PlainResponse.text(.tooManyRequests, "too many password checks at once\n")
            response.headers[.retryAfter] = "1"
            return response
        }
        let matches = await checkThreads.run { Bcrypt.matches(password: password, hash: hash) } ?? false
        let known = credentials.withLock { $0.users[user] == hash }
        guard matches && known else { return Self.unauthorized("Basic") }
        let digest = Bcrypt.digest([salt, user, password, hash])
        verified.withLock { verified in
            if verified.count >= Self.maxVerified { verified.removeAll() }
            verified.insert(digest)
        }
        return nil
    }

    private static func decide(_ headers: HTTPFields, _ auth: HTTPAuth) -> Decision {
        let (scheme, expected): (String, String)
        switch auth {
        case .bearer(let token): (scheme, expected) = ("Bearer", token)
        case .basic(let username, let password): (scheme, expected) = ("Basic", Data("\(username):\(password)".utf8).base64EncodedString())
        }
        let parts = (headers[.authorization] ?? "").split(separator: " ", maxSplits: 1)
        if parts.count == 2, parts[0].lowercased() == scheme.lowercased(),
           Bcrypt.constantTimeEqual(Array(parts[1].trimming(" ").utf8), Array(expected.utf8)) {
            return .allow
        }
        return .deny(unauthorized(scheme))
    }

    /// The user and password of a `Basic` header, or nil.
    private static func basicCredentials(_ headers: HTTPFields) -> (String, String)? {
        let parts = (headers[.authorization] ?? "").split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
              let decoded = Data(base64Encoded: String(parts[1].trimming(" "))),
              let text = String(data: decoded, encoding: .utf8), let colon = text.firstIndex(of: ":") else { return nil }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }

    private static func unauthorized(_ scheme: String) -> PlainResponse {
        var response = PlainResponse.text(.unauthorized, "unauthorized\n")
        response.headers[.wwwAuthenticate] = "\(scheme) realm=\"telltale\""
        return response
    }
}
