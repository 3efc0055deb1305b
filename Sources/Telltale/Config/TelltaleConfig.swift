import Glibc
import Logging
import Yams

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
}

public struct ProcessCollectorConfig: Sendable, Equatable {
    public var enabled = true
    public var schedule = Schedule(interval: .seconds(15), timeout: .seconds(5))
    public var watch: [WatchedProcess] = []
}

public struct HostCollectorConfig: Sendable, Equatable {
    public var enabled = true
    public var schedule = Schedule(interval: .seconds(15), timeout: .seconds(5))
    public var filesystems = ["/"]
}

/// The whole configuration. `TelltaleConfig()` is what runs with no file: the process and
/// host collectors with their defaults, served on port 9839.
public struct TelltaleConfig: Sendable {
    public var server = ServerConfig()
    public var logLevel = Logger.Level.info
    public var process = ProcessCollectorConfig()
    public var host = HostCollectorConfig()
    public var postgres: [PostgresTargetConfig] = []
    public var queues = QueueCollectorConfig()
    public var providers: [ProviderConfig] = []
    public var probes: [ProbeConfig] = []
    public var alerting = AlertingConfig()
    /// Threads for outbound HTTP (providers and probes); a hanging endpoint holds one.
    public var httpThreads = 8

    public init() {}

    /// Reads and validates a YAML file; every problem is reported at once.
    public static func load(path: String) throws(ConfigErrors) -> TelltaleConfig {
        switch BoundedFile.read(path, limit: maxFileSize) {
        case .success(let text): return try parse(text)
        case .failure(let problem): throw ConfigErrors(problems: ["cannot read the configuration file: \(problem)"])
        }
    }

    /// The largest configuration file read.
    static let maxFileSize = 4 << 20

    public static func parse(_ text: String) throws(ConfigErrors) -> TelltaleConfig {
        if let problem = YAMLAliases.problem(text) { throw ConfigErrors(problems: [problem]) }
        let node: Node?
        do {
            // No tag resolution: ConfigReader reads every scalar as text and parses it itself,
            // and the default resolver's NSRegularExpressions would load ICU for nothing.
            node = try Yams.compose(yaml: text, .basic)
        } catch {
            throw ConfigErrors(problems: [yamlProblem(error)])
        }
        var config = TelltaleConfig()
        guard let node else { return config }
        let problems = ConfigProblems()
        if let root = ConfigMap(node, path: "", problems: problems) {
            config.read(root)
        }
        if !problems.list.isEmpty { throw ConfigErrors(problems: problems.list) }
        return config
    }

    private mutating func read(_ root: ConfigMap) {
        if let server = root.map("server") { self.server.read(server) }
        if let log = root.map("log") {
            if let level = log.string("level") {
                if let parsed = Logger.Level(rawValue: level.lowercased()) {
                    logLevel = parsed
                } else {
                    log.problems.add(log.childPath("level"), "expected one of trace, debug, info, notice, warning, error, critical")
                }
            }
            log.finish()
        }
        if let collectors = root.map("collectors") {
            if let process = collectors.map("process") { self.process.read(process) }
            if let host = collectors.map("host") { self.host.read(host) }
            collectors.finish()
        }
        for (path, node) in root.list("postgres") ?? [] {
            if let map = ConfigMap(node, path: path, problems: root.problems),
               let target = PostgresTargetConfig.read(map) {
                postgres.append(target)
            }
        }
        if let queues = root.map("queues") { self.queues = QueueCollectorConfig.read(queues) }
        providers = root.list("providers")?.compactMap { path, node in
            ConfigMap(node, path: path, problems: root.problems).flatMap(ProviderConfig.read)
        } ?? []
        probes = root.list("probes")?.compactMap { path, node in
            ConfigMap(node, path: path, problems: root.problems).flatMap(ProbeConfig.read)
        } ?? []
        if let threads = root.int("http_threads", in: 1...256) { httpThreads = threads }
        if let alerting = root.map("alerting") { self.alerting = AlertingConfig.read(alerting) }
        for (key, names) in [("providers", providers.map(\.name)), ("probes", probes.map(\.name))]
        where Set(names).count != names.count {
            root.problems.add(key, "names must be unique")
        }
        if Set(postgres.map(\.name)).count != postgres.count {
            root.problems.add("postgres", "target names must be unique")
        }
        root.finish()
    }
}

/// The position and kind of a YAML syntax error, without quoting the offending line: it may
/// hold a secret.
private func yamlProblem(_ error: any Error) -> String {
    switch error as? YamlError {
    case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
        "not valid YAML at line \(mark.line), column \(mark.column): \(problem)"
    default:
        "not valid YAML"
    }
}

extension ServerConfig {
    mutating func read(_ map: ConfigMap) {
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

extension Schedule {
    /// Reads `interval` and `timeout`; the timeout may not exceed the interval.
    mutating func read(_ map: ConfigMap) {
        if let interval = map.duration("interval") { self.interval = interval }
        if let timeout = map.duration("timeout") { self.timeout = timeout }
        if timeout > interval {
            map.problems.add(map.childPath("timeout"), "must not be longer than the interval (\(interval))")
        }
    }
}

extension ProcessCollectorConfig {
    mutating func read(_ map: ConfigMap) {
        if let enabled = map.bool("enabled") { self.enabled = enabled }
        schedule.read(map)
        for (path, node) in map.list("watch") ?? [] {
            guard let item = ConfigMap(node, path: path, problems: map.problems) else { continue }
            let name = item.string("name")
            let pidFile = item.string("pid_file")
            let pattern = item.string("pattern")
            item.finish()
            guard let name, !name.isEmpty else {
                item.problems.add(item.childPath("name"), "is required")
                continue
            }
            switch (pidFile, pattern) {
            case (let file?, nil):
                watch.append(WatchedProcess(name: name, match: .pidFile(file)))
            case (nil, let pattern?):
                do {
                    _ = try BoundedRegex(pattern, anchoring: .anywhere)
                    watch.append(WatchedProcess(name: name, match: .pattern(pattern)))
                } catch {
                    item.problems.add(item.childPath("pattern"), error.description)
                }
            default:
                item.problems.add(path, "set exactly one of pid_file or pattern")
            }
        }
        if Set(watch.map(\.name)).count != watch.count {
            map.problems.add(map.childPath("watch"), "process names must be unique")
        }
        map.finish()
    }
}

extension HostCollectorConfig {
    mutating func read(_ map: ConfigMap) {
        if let enabled = map.bool("enabled") { self.enabled = enabled }
        schedule.read(map)
        if let filesystems = map.stringList("filesystems") { self.filesystems = filesystems }
        map.finish()
    }
}
