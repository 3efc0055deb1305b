import TelltaleClients
import TelltaleCore

/// `alerting.system_health`: the optional writer of the admin portal's `admin_system_health`
/// rows, the one write Telltale makes into the application's own tables.
public struct SystemHealthConfig: Sendable, Equatable {
    public var enabled = false
    /// The application's database (its own DSN: the alerting database may be another one).
    public var dsn = ""
    /// A row is written this often.
    public var interval = Duration.seconds(60)
    /// The HTTP probe (`probes[].name`) whose latency and error ratio fill `apiLatencyMs` and
    /// `apiErrorRate`; without one those columns are NULL.
    public var probe: String?
    /// Rows whose `createdAt` is older than this are deleted.
    public var retention = Duration.seconds(7 * 86400)
    public var timeouts = QueryTimeouts(statement: .seconds(5), lock: .seconds(2))
    public var connectTimeout = Duration.seconds(5)

    /// Rows deleted per interval at most: a large backlog is pruned over several intervals
    /// instead of by one long-running statement.
    static let pruneBatch = 1000

    package static func read(_ map: ConfigMap) -> SystemHealthConfig {
        var config = SystemHealthConfig()
        config.enabled = map.bool("enabled") ?? false
        if let dsn = map.postgresDSN(required: config.enabled) { config.dsn = dsn }
        if let interval = map.duration("interval") { config.interval = interval }
        config.probe = map.string("probe")
        if config.probe?.isEmpty == true { map.problems.add(map.childPath("probe"), "expected the name of a probe") }
        if let retention = map.duration("retention") { config.retention = retention }
        if config.retention < config.interval {
            map.problems.add(map.childPath("retention"), "must be at least the interval, or every row would be pruned at once")
        }
        config.timeouts.read(map)
        if let timeout = map.duration("connect_timeout") { config.connectTimeout = timeout }
        map.finish()
        return config
    }

    public static let probePath = "alerting.system_health.probe"

    /// The problem with `probe`, given the names of the configured probes: reported with the
    /// configuration, so a misspelt name stops the start instead of writing NULLs for ever.
    public func probeProblem(configured: [String]) -> String? {
        guard enabled, let probe, !configured.contains(probe) else { return nil }
        let known = configured.isEmpty ? "no probes are configured" : "configured: \(configured.joined(separator: ", "))"
        return "no probe named \"\(probe)\" (\(known))"
    }

    public init() {}
}
