import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// Alerting: rules and channels live in Postgres (see `telltale migrate`).
public struct AlertingConfig: Sendable, Equatable {
    public var enabled = false
    /// The database holding Telltale's tables (and, if present, `admin_alert_thresholds`).
    public var dsn = ""
    /// Only rules of this environment are evaluated; all when unset.
    public var environment: String?
    /// Rules are reloaded, and evaluated, at least this often (and after every collection).
    public var interval = Duration.seconds(10)
    /// Link put in messages, e.g. Telltale's `/` page or a Grafana dashboard.
    public var externalURL: String?
    public var adminThresholds = true
    public var adminFor = Duration.seconds(300)
    public var adminSeverity = "warning"
    public var timeouts = QueryTimeouts(statement: .seconds(5), lock: .seconds(2))
    public var connectTimeout = Duration.seconds(5)
    public var deliveryTimeout = Duration.seconds(10)
    /// A channel row's `url_env` must name a variable starting with this: whoever writes the
    /// channels table must not be able to read the rest of the environment.
    public var channelEnvPrefix = "TELLTALE_CHANNEL_"
    /// A channel row's `url_file` must be a file below this directory.
    public var channelFileDirectory = "/etc/telltale/channels"
    /// Samples kept for windowed rules, over all series (about 50 bytes each).
    public var maxSamples = 1_000_000
    /// Outbox rows done with (sent, given up, carried) are deleted once older than this.
    public var outboxRetention = Duration.seconds(30 * 86400)
    /// The admin portal's System Health rows (off unless enabled).
    public var systemHealth = SystemHealthConfig()

    package static func read(_ map: ConfigMap) -> AlertingConfig {
        var config = AlertingConfig()
        config.enabled = map.bool("enabled") ?? true
        if let dsn = map.postgresDSN(required: true) { config.dsn = dsn }
        config.environment = map.string("environment")
        if let interval = map.duration("interval") { config.interval = interval }
        config.externalURL = map.string("external_url")
        if let admin = map.map("admin_thresholds") {
            if let enabled = admin.bool("enabled") { config.adminThresholds = enabled }
            if let duration = admin.duration("for", allowZero: true) { config.adminFor = duration }
            if let severity = admin.string("severity") { config.adminSeverity = severity }
            admin.finish()
        }
        config.timeouts.read(map)
        if let timeout = map.duration("connect_timeout") { config.connectTimeout = timeout }
        if let timeout = map.duration("delivery_timeout") { config.deliveryTimeout = timeout }
        if let maxSamples = map.int("max_samples", in: 1000...100_000_000) { config.maxSamples = maxSamples }
        if let prefix = map.string("channel_env_prefix") {
            if prefix.count >= 3, prefix.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) {
                config.channelEnvPrefix = prefix
            } else {
                map.problems.add(map.childPath("channel_env_prefix"), "expected at least 3 letters, digits or underscores")
            }
        }
        if let directory = map.string("channel_file_dir") {
            if directory.hasPrefix("/") && directory != "/" {
                config.channelFileDirectory = directory
            } else {
                map.problems.add(map.childPath("channel_file_dir"), "expected an absolute path to a directory other than /")
            }
        }
        if let retention = map.duration("outbox_retention") {
            if retention >= .seconds(3600) {
                config.outboxRetention = retention
            } else {
                map.problems.add(map.childPath("outbox_retention"), "must be at least 1h: the outbox is what shows a message was sent")
            }
        }
        if let health = map.map("system_health") { config.systemHealth = SystemHealthConfig.read(health) }
        if config.systemHealth.enabled && !config.enabled {
            map.problems.add(map.childPath("system_health.enabled"), "needs alerting enabled: the alerting leader writes the rows")
        }
        map.finish()
        return config
    }

    public init() {}
}
