import Glibc
import Logging
import TelltaleAlerting
import TelltaleClients
import TelltaleCollectors
import TelltaleCore
import TelltaleMetrics
import TelltaleServer
import Yams

/// The whole configuration. `TelltaleConfig()` is what runs with no file: the process and
/// host collectors with their defaults, served on port 9839.
public struct TelltaleConfig: Sendable {
    public var server = ServerConfig()
    public var logLevel = Logger.Level.info
    /// Each registered source's settings, in `SourceRegistration.all` order.
    public var sources: [any SourceSettings]
    public var alerting = AlertingConfig()
    /// Threads for outbound HTTP (providers and probes); a hanging endpoint holds one.
    public var httpThreads = 8

    public init() {
        sources = Self.readSources(ConfigMap(problems: ConfigProblems()))
    }

    /// Every source's warnings: valid, but probably not what was meant.
    public var warnings: [String] { sources.flatMap(\.warnings) }

    /// The settings of the source whose settings are of type `S`.
    public func source<S: SourceSettings>(_ type: S.Type) -> S? {
        sources.lazy.compactMap { $0 as? S }.first
    }

    private static func readSources(_ root: ConfigMap) -> [any SourceSettings] {
        let sections = ConfigSections(root: root, collectors: root.map("collectors"))
        defer { sections.collectors?.finish() }
        return SourceRegistration.all.map { $0.read(sections) }
    }

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
        sources = Self.readSources(root)
        if let threads = root.int("http_threads", in: 1...256) { httpThreads = threads }
        if let alerting = root.map("alerting") { self.alerting = AlertingConfig.read(alerting) }
        let probes = source(ProbeList.self)?.probes.map(\.name) ?? []
        if let problem = alerting.systemHealth.probeProblem(configured: probes) {
            root.problems.add(SystemHealthConfig.probePath, problem)
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
