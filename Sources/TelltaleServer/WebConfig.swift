import NIOSSL
import TelltaleCore
import Yams

/// `--web.config.file`: the exporter toolkit's web configuration, so that one file serves
/// Telltale and the exporters it replaces. Problems name the file and the key.
public struct WebConfig: Sendable, Equatable {
    public var path: String
    public var tls: TLSServerSettings?
    /// User name → bcrypt hash.
    public var users: [String: String] = [:]
    /// Response headers for every answer, in name order.
    public var headers: [ResponseHeader] = []

    public struct ResponseHeader: Sendable, Equatable {
        public let name: String
        public let value: String
    }

    /// The headers the exporter toolkit lets `http_server_config.headers` set, spelled as it does.
    static let allowedHeaders = [
        "Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection", "Strict-Transport-Security",
    ]
    /// The largest web configuration file read.
    static let maxFileSize = 1 << 20

    /// Reads and validates the file, the TLS material included (read and loaded once).
    public static func load(path: String) throws(ConfigErrors) -> WebConfig {
        let text: String
        switch BoundedFile.read(path, limit: maxFileSize) {
        case .success(let read): text = read
        case .failure(let problem): throw ConfigErrors(problems: ["\(path): cannot read the web configuration file: \(problem)"])
        }
        return try parse(text, path: path)
    }

    /// Validates `text` read from `path`; problems are prefixed with the path.
    static func parse(_ text: String, path: String) throws(ConfigErrors) -> WebConfig {
        if let problem = YAMLAliases.problem(text) { throw ConfigErrors(problems: ["\(path): \(problem)"]) }
        let problems = ConfigProblems()
        var config = WebConfig(path: path)
        do {
            if let node = try Yams.compose(yaml: text, .basic), let root = ConfigMap(node, path: "", problems: problems) {
                config.read(root)
            }
        } catch {
            problems.add("", "not valid YAML")
        }
        if let tls = config.tls, problems.list.isEmpty {
            do {
                _ = try TLSMaterial.load(tls)
            } catch {
                problems.add("tls_server_config", error.description)
            }
        }
        if !problems.list.isEmpty { throw ConfigErrors(problems: problems.list.map { "\(path): \($0)" }) }
        return config
    }

    private mutating func read(_ root: ConfigMap) {
        if let tls = root.map("tls_server_config") {
            self.tls = TLSServerSettings.read(tls)
            tls.finish()
        }
        if let server = root.map("http_server_config") {
            readServer(server)
            server.finish()
        }
        if let users = root.map("basic_auth_users") {
            for user in users.keys {
                guard let hash = users.string(user) else { continue }
                if let problem = Bcrypt.problem(hash) {
                    users.problems.add(users.childPath(user), problem)
                } else {
                    self.users[user] = hash
                }
            }
            users.finish()
        }
        root.finish()
    }

    private mutating func readServer(_ server: ConfigMap) {
        // Telltale speaks HTTP/1.1 only; the key is accepted so that one file serves all exporters.
        _ = server.bool("http2")
        guard let headers = server.map("headers") else { return }
        for name in headers.keys {
            guard let allowed = Self.allowedHeaders.first(where: { $0.lowercased() == name.lowercased() }) else {
                headers.problems.add(headers.childPath(name), "not one of the headers that may be set: \(Self.allowedHeaders.joined(separator: ", "))")
                continue
            }
            if let value = headers.string(name) { self.headers.append(ResponseHeader(name: allowed, value: value)) }
        }
        self.headers.sort { $0.name < $1.name }
        headers.finish()
    }
}

/// `tls_server_config`.
public struct TLSServerSettings: Sendable, Equatable {
    public enum ClientAuth: String, Sendable, CaseIterable {
        case noClientCert = "NoClientCert"
        case requestClientCert = "RequestClientCert"
        case requireAnyClientCert = "RequireAnyClientCert"
        case verifyClientCertIfGiven = "VerifyClientCertIfGiven"
        case requireAndVerifyClientCert = "RequireAndVerifyClientCert"

        /// Whether a client's certificate is checked against `client_ca_file`.
        var verifies: Bool { self == .verifyClientCertIfGiven || self == .requireAndVerifyClientCert }
    }

    public var certFile: String
    public var keyFile: String
    public var clientCAFile: String?
    public var clientAuth = ClientAuth.noClientCert
    public var minVersion = TLSVersion.tlsv12
    public var maxVersion = TLSVersion.tlsv13

    /// The files the material is read from.
    var files: [String] { [certFile, keyFile] + (clientCAFile.map { [$0] } ?? []) }

    static let versions: [String: TLSVersion] = ["TLS10": .tlsv1, "TLS11": .tlsv11, "TLS12": .tlsv12, "TLS13": .tlsv13]
    /// Exporter-toolkit keys Telltale does not implement: an error rather than a setting silently ignored.
    static let unsupported = ["cert", "key", "client_ca", "cipher_suites", "curve_preferences", "prefer_server_cipher_suites",
                              "client_allowed_sans"]

    static func read(_ map: ConfigMap) -> TLSServerSettings? {
        for key in unsupported where map.has(key) {
            _ = map.node(key)
            map.problems.add(map.childPath(key), "is not supported by Telltale (give files with cert_file, key_file, client_ca_file)")
        }
        let certFile = map.string("cert_file"), keyFile = map.string("key_file")
        if certFile == nil { map.problems.add(map.childPath("cert_file"), "is required") }
        if keyFile == nil { map.problems.add(map.childPath("key_file"), "is required") }
        var settings = TLSServerSettings(certFile: certFile ?? "", keyFile: keyFile ?? "")
        settings.clientCAFile = map.string("client_ca_file")
        if let text = map.string("client_auth_type") {
            if let auth = ClientAuth(rawValue: text) {
                settings.clientAuth = auth
            } else {
                map.problems.add(map.childPath("client_auth_type"),
                                 "expected one of \(ClientAuth.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        if settings.clientAuth.verifies && settings.clientCAFile == nil {
            map.problems.add(map.childPath("client_ca_file"), "is required with client_auth_type \(settings.clientAuth.rawValue)")
        }
        if settings.clientCAFile != nil && settings.clientAuth == .noClientCert {
            map.problems.add(map.childPath("client_auth_type"), "client_ca_file is set: choose how client certificates are checked")
        }
        settings.minVersion = readVersion(map, "min_version") ?? settings.minVersion
        settings.maxVersion = readVersion(map, "max_version") ?? settings.maxVersion
        if rank(settings.minVersion) > rank(settings.maxVersion) {
            map.problems.add(map.childPath("min_version"), "is above max_version")
        }
        return certFile == nil || keyFile == nil ? nil : settings
    }

    private static func rank(_ version: TLSVersion) -> Int {
        switch version {
        case .tlsv1: 0
        case .tlsv11: 1
        case .tlsv12: 2
        case .tlsv13: 3
        }
    }

    private static func readVersion(_ map: ConfigMap, _ key: String) -> TLSVersion? {
        guard let text = map.string(key) else { return nil }
        guard let version = versions[text] else {
            map.problems.add(map.childPath(key), "expected one of TLS10, TLS11, TLS12, TLS13")
            return nil
        }
        return version
    }
}
