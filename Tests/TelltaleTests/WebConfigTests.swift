import Foundation
import HTTPTypes
import Testing
@testable import TelltaleCore
@testable import TelltaleServer

@Suite struct WebConfigTests {
    /// A bcrypt hash of "secret" at cost 4 (made with Python's bcrypt package).
    static let secretHash = "$2b$04$AbWP4AXE0ZnUgJEsVX07v.SbjCEo11Y7518edWT03E4.S4vAorO7q"

    func write(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("web-\(UUID().uuidString).yml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func problems(_ text: String) throws -> [String] {
        let path = try write(text)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try WebConfig.load(path: path)
            return []
        } catch {
            return error.problems
        }
    }

    @Test func usersAndHeadersAreRead() throws {
        let path = try write("""
            basic_auth_users: {alice: "\(Self.secretHash)"}
            http_server_config:
              http2: true
              headers: {x-frame-options: deny, Content-Security-Policy: "default-src 'self'"}
            """)
        let config = try WebConfig.load(path: path)
        #expect(config.users == ["alice": Self.secretHash])
        #expect(config.headers.map(\.name) == ["Content-Security-Policy", "X-Frame-Options"])
        #expect(config.tls == nil)
    }

    @Test func everyProblemNamesTheFileAndTheKey() throws {
        let found = try problems("""
            basic_auth_users: {alice: "$1$md5", bob: "\(Self.secretHash)"}
            http_server_config: {headers: {Server: x}}
            tls_server_config: {client_auth_type: Sometimes, min_version: SSL3, curve_preferences: [x]}
            colour: red
            """)
        for key in ["basic_auth_users.alice", "http_server_config.headers.Server", "tls_server_config.cert_file",
                    "tls_server_config.key_file", "tls_server_config.client_auth_type", "tls_server_config.min_version",
                    "tls_server_config.curve_preferences", "colour"] {
            #expect(found.contains { $0.contains(key) }, "\(key) in \(found)")
        }
        #expect(found.allSatisfy { $0.hasPrefix("/") && $0.contains(".yml: ") })
        #expect(!found.contains { $0.contains("basic_auth_users.bob") })
    }

    @Test func bcryptHashesAreValidatedBeforeUse() {
        #expect(Bcrypt.problem(Self.secretHash) == nil)
        #expect(Bcrypt.problem("$2y$" + Self.secretHash.dropFirst(4)) == nil)
        #expect(Bcrypt.problem("$2b$03$" + Self.secretHash.dropFirst(7)) != nil)
        #expect(Bcrypt.problem("$2b$04$short") != nil)
        #expect(Bcrypt.problem("$2b$04$" + String(repeating: "*", count: 53)) != nil)
        #expect(Bcrypt.problem("") != nil)
    }

    @Test func bcryptChecksPasswords() {
        #expect(Bcrypt.matches(password: "secret", hash: Self.secretHash))
        #expect(!Bcrypt.matches(password: "Secret", hash: Self.secretHash))
        #expect(!Bcrypt.matches(password: "", hash: Self.secretHash))
        #expect(!Bcrypt.matches(password: "secret", hash: "not a hash"))
    }

    func headers(_ user: String, _ password: String) -> HTTPFields {
        [.authorization: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()]
    }

    @Test func theGuardChecksOnceAndThenAnswersAtOnce() async throws {
        let web = WebConfig(path: "web.yml", users: ["alice": Self.secretHash])
        let guardian = RequestGuard(auth: nil, web: web)
        guard case .needsCheck = guardian.decide(headers("alice", "secret")) else { Issue.record("a first check is needed"); return }
        #expect(await guardian.deny(headers("alice", "wrong"))?.status == .unauthorized)
        #expect(await guardian.deny(headers("nobody", "secret"))?.status == .unauthorized)
        #expect(await guardian.deny(headers("alice", "secret")) == nil)
        guard case .allow = guardian.decide(headers("alice", "secret")) else { Issue.record("remembered"); return }
        guard case .deny = guardian.decide([:]) else { Issue.record("no credentials"); return }
        guard case .needsCheck = guardian.decide(headers("alice", "wrong")) else { Issue.record("wrong one not remembered"); return }
        // New users forget what was verified.
        guardian.update(auth: nil, web: WebConfig(path: "web.yml", users: ["bob": Self.secretHash]))
        #expect(await guardian.deny(headers("alice", "secret"))?.status == .unauthorized)
        #expect(await guardian.deny(headers("bob", "secret")) == nil)
    }

    @Test func theGuardWithoutCredentialsLetsEverythingThrough() {
        guard case .allow = RequestGuard(auth: nil).decide([:]) else { Issue.record("open"); return }
        guard case .allow = RequestGuard(auth: .bearer(token: "t")).decide([.authorization: "bearer t"]) else {
            Issue.record("bearer"); return
        }
        guard case .deny = RequestGuard(auth: .bearer(token: "t")).decide([.authorization: "Bearer u"]) else {
            Issue.record("wrong bearer"); return
        }
    }

    @Test func headersAreAddedToResponses() {
        let guardian = RequestGuard(auth: nil, web: WebConfig(path: "w", headers: [.init(name: "X-Frame-Options", value: "deny")]))
        var fields: HTTPFields = [:]
        guardian.addResponseHeaders(to: &fields)
        #expect(fields[HTTPField.Name("X-Frame-Options")!] == "deny")
    }
}
