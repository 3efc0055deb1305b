import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// One PostgreSQL target: its connection, its health metrics and its SQL-defined metrics.
public struct PostgresTargetConfig: Sendable, Equatable {
    public var name: String
    /// libpq connection string or URL. A secret: shown only through `DSNInfo`.
    public var dsn: String
    public var schedule = Schedule(interval: .seconds(15), timeout: .seconds(5))
    public var connectTimeout = Duration.seconds(5)
    public var timeouts = QueryTimeouts(statement: .seconds(2), lock: .seconds(1))
    public var healthEnabled = true
    public var databaseSizeEnabled = true
    public var databaseSizeInterval = Duration.seconds(300)
    public var queries: [SQLMetricConfig] = []
}

/// A metric family defined by a query.
public struct SQLMetricConfig: Sendable, Equatable {
    public enum Mode: Sendable, Equatable {
        /// Each run's rows are the family's current series.
        case current
        /// The query receives the last watermark as `$1` and returns only newer rows, which
        /// are added to counters or observed into histograms.
        case incremental(watermarkColumn: String, start: String)
    }

    public var descriptor: MetricDescriptor
    public var sql: String
    public var labelColumns: [String] = []
    public var valueColumns: [String] = []
    public var valueLabel: String?
    public var mode = Mode.current
    public var schedule: Schedule
    public var timeouts: QueryTimeouts
    public var maxSeries = 1000
    public var buckets: [Double] = []
}

extension PostgresTargetConfig {
    package static func read(_ map: ConfigMap) -> PostgresTargetConfig? {
        let name = map.string("name")
        // A key that is present but unusable (an unset ${VAR}, say) has reported its own problem.
        if !map.has("name") || name?.isEmpty == true { map.problems.add(map.childPath("name"), "is required") }
        // Collector names are `sql:<target>:<metric>` and metric names may hold colons: a
        // colon in a target name could make two queries' collectors one name.
        if name?.contains(":") == true { map.problems.add(map.childPath("name"), "must not contain \":\"") }
        let dsn = map.postgresDSN(required: true)
        var target = PostgresTargetConfig(name: name ?? "", dsn: dsn ?? "")
        target.schedule.read(map)
        if let timeout = map.duration("connect_timeout") { target.connectTimeout = timeout }
        target.timeouts.read(map)
        if let health = map.map("health") {
            if let enabled = health.bool("enabled") {
                target.healthEnabled = enabled
                // The size query is part of health: off with it unless asked for by itself.
                target.databaseSizeEnabled = enabled
            }
            if let size = health.map("database_size") {
                if let enabled = size.bool("enabled") { target.databaseSizeEnabled = enabled }
                if let interval = size.duration("interval") { target.databaseSizeInterval = interval }
                size.finish()
            }
            health.finish()
        }
        var metricNames: Set<String> = []
        for (path, node) in map.list("queries") ?? [] {
            guard let item = ConfigMap(node, path: path, problems: map.problems) else { continue }
            guard let query = SQLMetricConfig.read(item, defaults: target) else { continue }
            if !metricNames.insert(query.descriptor.name).inserted {
                item.problems.add(item.childPath("metric"), "\"\(query.descriptor.name)\" is defined twice for this target")
            }
            target.queries.append(query)
        }
        map.finish()
        return name != nil && dsn != nil ? target : nil
    }
}

extension SQLMetricConfig {
    static func read(_ map: ConfigMap, defaults target: PostgresTargetConfig) -> SQLMetricConfig? {
        let problems = map.problems
        let name = map.string("metric") ?? ""
        let help = map.string("help") ?? "Defined by a SQL query in Telltale's configuration."
        let typeText = map.string("type") ?? "gauge"
        let type: MetricType? = ["gauge": .gauge, "counter": .counter, "histogram": .histogram][typeText]
        if type == nil { problems.add(map.childPath("type"), "expected gauge, counter or histogram, got \"\(typeText)\"") }
        let unit = map.string("unit")
        let descriptor = MetricDescriptor(name, type ?? .gauge, help: help, unit: unit)
        if name.isEmpty {
            problems.add(map.childPath("metric"), "is required")
        } else if let problem = descriptor.problem {
            problems.add(map.childPath("metric"), problem)
        }
        let sql = map.string("sql") ?? ""
        if sql.isEmpty { problems.add(map.childPath("sql"), "is required") }

        var query = SQLMetricConfig(descriptor: descriptor, sql: sql, schedule: target.schedule, timeouts: target.timeouts)
        query.labelColumns = map.stringList("labels") ?? []
        query.valueColumns = map.stringList("values") ?? []
        query.valueLabel = map.string("value_label")
        query.schedule.read(map)
        if let timeout = map.duration("statement_timeout") { query.timeouts.statement = timeout }
        if let timeout = map.duration("lock_timeout") { query.timeouts.lock = timeout }
        if let cap = map.int("max_series", in: 1...1_000_000) { query.maxSeries = cap }
        for label in query.labelColumns + [query.valueLabel].compactMap({ $0 }) where !MetricNames.isValidLabelName(label) {
            problems.add(map.path, "\"\(label)\" is not a valid label name (labels are named after their columns)")
        }
        query.readMode(map)
        query.readBuckets(map)
        map.finish()
        return query
    }

    private mutating func readMode(_ map: ConfigMap) {
        let problems = map.problems
        let modeText = map.string("mode") ?? "current"
        let watermark = map.string("watermark")
        let start = map.string("watermark_start")
        switch modeText {
        case "current":
            if watermark != nil { problems.add(map.childPath("watermark"), "only applies to mode: incremental") }
            if descriptor.type == .histogram { problems.add(map.childPath("mode"), "histograms need mode: incremental") }
            if valueColumns.isEmpty { problems.add(map.childPath("values"), "name at least one value column") }
        case "incremental":
            guard let watermark, !watermark.isEmpty else {
                problems.add(map.childPath("watermark"), "is required with mode: incremental")
                return
            }
            if descriptor.type == .gauge { problems.add(map.childPath("mode"), "incremental mode is for counters and histograms") }
            if !sql.contains("$1") { problems.add(map.childPath("sql"), "must use $1, the last watermark, with mode: incremental") }
            if descriptor.type == .histogram && valueColumns.count != 1 {
                problems.add(map.childPath("values"), "a histogram observes exactly one value column")
            }
            mode = .incremental(watermarkColumn: watermark, start: start ?? "0")
        default:
            problems.add(map.childPath("mode"), "expected current or incremental, got \"\(modeText)\"")
        }
        if valueColumns.count > 1 && valueLabel == nil {
            problems.add(map.childPath("value_label"), "is required with several value columns, to tell their series apart")
        }
    }

    private mutating func readBuckets(_ map: ConfigMap) {
        guard let texts = map.stringList("buckets") else {
            if descriptor.type == .histogram { buckets = Buckets.defaultSeconds }
            return
        }
        let bounds = texts.compactMap(Double.init)
        if bounds.count != texts.count {
            map.problems.add(map.childPath("buckets"), "expected numbers")
        } else if let problem = Buckets.problem(bounds) {
            map.problems.add(map.childPath("buckets"), problem)
        } else if descriptor.type != .histogram {
            map.problems.add(map.childPath("buckets"), "only applies to histograms")
        }
        buckets = bounds
    }
}

/// `postgres`: the targets, each with health, database-size and SQL-defined collectors
/// sharing the target's one connection.
public struct PostgresTargets: SourceSettings {
    public var targets: [PostgresTargetConfig] = []

    static let registration = SourceRegistration { sections in
        PostgresTargets(targets: sections.namedList("postgres", item: PostgresTargetConfig.read, name: \.name))
    }

    public func collectors(_ shared: SharedClients) -> [any Collector] {
        targets.flatMap { Self.collectors($0, shared) }
    }

    private static func collectors(_ target: PostgresTargetConfig, _ shared: SharedClients) -> [any Collector] {
        let client = shared.postgres(target: target.name, dsn: target.dsn, connectTimeout: target.connectTimeout)
        var collectors: [any Collector] = []
        if target.healthEnabled {
            collectors.append(PostgresHealthCollector(client: client, schedule: target.schedule, timeouts: target.timeouts))
        }
        if target.databaseSizeEnabled {
            let schedule = Schedule(interval: target.databaseSizeInterval, timeout: target.schedule.timeout)
            collectors.append(PostgresDatabaseSizeCollector(client: client, schedule: schedule, timeouts: target.timeouts))
        }
        return collectors + target.queries.map { SQLMetricCollector(client: client, query: $0) }
    }
}
