import Glibc
import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// The rules and channels in force, as read from the database. Every row is validated on
/// its own: an invalid row is reported and skipped, and the last good version of that rule
/// (or channel) stays in force.
struct RuleCatalog: Sendable {
    var rules: [String: AlertRule] = [:]
    /// Why the current row of a rule is not in force, by rule name.
    var ruleErrors: [String: String] = [:]
    var channels: [String: Channel] = [:]
    var channelErrors: [String: String] = [:]
    /// Silences and mute times in force.
    var muting = Muting()
}

/// Reads `telltale_alert_rules`, `telltale_channels` and the admin portal's
/// `admin_alert_thresholds`. Values are only ever bound as parameters, never spliced.
struct RuleLoader: Sendable {
    let settings: AlertingConfig

    static let rulesSQL = """
        SELECT name, environment, metric, matchers, comparison, threshold, clear_threshold, for_seconds, \
        keep_firing_seconds, severity, channel, description, enabled, mute_time, function, window_seconds, aggregate, aggregate_by \
        FROM telltale_alert_rules ORDER BY name
        """
    static let channelsSQL = """
        SELECT name, kind, url_env, url_file, enabled, endpoint, email_from, email_to, smtp_tls, ca_file, group_by, \
        group_wait_seconds, group_interval_seconds, repeat_interval_seconds, mute_time FROM telltale_channels ORDER BY name
        """
    /// The name under which a failure to read the admin thresholds is reported.
    static let adminSource = "admin_alert_thresholds"
    static let adminSQL = """
        SELECT environment, "cpuThreshold", "memoryThreshold", channel FROM admin_alert_thresholds ORDER BY environment
        """

    func load(_ client: PostgresClient, previous: RuleCatalog) async throws(PostgresError) -> RuleCatalog {
        let timeouts = settings.timeouts
        var catalog = RuleCatalog()
        let channelRows = try await client.query(Self.channelsSQL, timeouts: timeouts)
        // Channel URLs may come from files: read on threads that may block, never here, and
        // never waited for long (a hung mount): the previous channels stay in force meanwhile.
        let secrets = ChannelSecrets(settings)
        let (channels, channelErrors) = await secrets.read { readChannels(channelRows, previous, secrets) }
            ?? (previous.channels, previous.channelErrors)
        catalog.channels = channels
        catalog.channelErrors = channelErrors
        try await loadMuting(client, into: &catalog)
        for (name, channel) in catalog.channels {
            guard let muteTime = channel.grouping.muteTime, catalog.muting.muteTimes[muteTime] == nil else { continue }
            catalog.channelErrors[name] = "mute_time \"\(muteTime.clipped(60))\" names no valid row of telltale_mute_times"
        }
        var rows = try await client.query(Self.rulesSQL, timeouts: timeouts).rows.map(RuleRow.init(telltale:))
        if settings.adminThresholds {
            do throws(PostgresError) {
                rows += try await client.query(Self.adminSQL, timeouts: timeouts).rows.flatMap { RuleRow.admin($0, settings) }
            } catch where error.sqlState == "42P01" {
                // No admin portal schema in this database: nothing to read.
            } catch where error.kind == .query {
                // Unreadable (permissions, other columns): reported, and Telltale's own rules go on.
                catalog.ruleErrors[Self.adminSource] = "cannot read admin_alert_thresholds: \(error.message)"
            }
        }
        // Regexes unchanged since the last load (to the byte) are not compiled again.
        let compiled = Dictionary(previous.rules.values.flatMap(\.matchers).compactMap { $0.regex.map { (ExactString($0.pattern), $0) } },
                                  uniquingKeysWith: { first, _ in first })
        for row in rows where settings.environment.map({ row.environment == $0 }) ?? true {
            guard row.enabled else { continue }
            switch row.validate(catalog, compiled: compiled) {
            case .success(let rule):
                catalog.rules[rule.name] = rule
            case .failure(let error):
                catalog.ruleErrors[row.name] = error.description
                if let lastGood = previous.rules[row.name] { catalog.rules[row.name] = lastGood }
            }
        }
        return catalog
    }

    private func readChannels(_ result: PGResult, _ previous: RuleCatalog, _ secrets: ChannelSecrets)
        -> ([String: Channel], [String: String])
    {
        var channels: [String: Channel] = [:]
        var errors: [String: String] = [:]
        for row in result.rows {
            let name = row[0].text
            let kindText = row[1].text.lowercased()
            let url = secrets.url(env: row[2].optionalText, file: row[3].optionalText)
            let settings = ReceiverSettings.Row(endpoint: row[5].optionalText, emailFrom: row[6].optionalText,
                                                emailTo: row[7].optionalText, smtpTLS: row[8].optionalText, caFile: row[9].optionalText)
            let grouping = GroupSettings.parse(groupBy: row[10].optionalText, wait: row[11].number, interval: row[12].number,
                                               repeatInterval: row[13].number, muteTime: row[14].optionalText)
            switch (Channel.Kind(rawValue: kindText), url, grouping) {
            case (let kind?, .success(let url), .success(let grouping)):
                switch Channel.validated(name: name, kind: kind, secret: url, enabled: row[4] == .bool(true), row: settings,
                                         secrets: secrets) {
                case .success(var channel):
                    channel.grouping = grouping
                    channels[name] = channel
                    continue
                case .failure(let problem):
                    errors[name] = problem.description
                }
            case (nil, _, _):
                let kinds = Channel.Kind.allCases.map(\.rawValue).joined(separator: ", ")
                errors[name] = "unknown kind \"\(kindText.clipped(40))\" (\(kinds))"
            case (_, .failure(let problem), _):
                errors[name] = problem.description
            case (_, _, .failure(let problem)):
                errors[name] = problem.description
            }
            if let lastGood = previous.channels[name] { channels[name] = lastGood }
        }
        return (channels, errors)
    }
}

/// Where channel URLs may come from. Rows of `telltale_channels` are written by whoever
/// administers alerting (an admin portal, by design), so they may only name environment
/// variables with the configured prefix and files below the configured directory: never
/// the database password, nor any other file.
struct ChannelSecrets: Sendable {
    let envPrefix: String
    let directory: String

    init(_ settings: AlertingConfig) {
        envPrefix = settings.channelEnvPrefix
        directory = settings.channelFileDirectory
    }

    /// How long a reload waits for the channel files.
    static let readLimit = Duration.seconds(5)
    /// Whether a read of channel files is still running (stuck, if it outlived `readLimit`):
    /// no other starts meanwhile, so a hung mount holds one thread, not one per reload.
    private static let reading = Atomic<Bool>(false)

    /// Runs `work` (which reads channel files) on a blocking thread; nil when another read is
    /// still running or this one did not finish within `readLimit`.
    func read<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T? {
        guard Self.reading.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return nil }
        return await BlockingIO.run(within: Self.readLimit) {
            defer { Self.reading.store(false, ordering: .releasing) }
            return work()
        }
    }

    /// The URL, or why it is not available. Reads a file: call on a thread that may block.
    func url(env: String?, file: String?) -> Result<String, FileProblem> {
        let url: Result<String, FileProblem>
        if let env {
            url = fromEnvironment(env)
        } else if let file {
            url = fromFile(file)
        } else {
            return .failure(FileProblem("set url_env or url_file"))
        }
        if case .success(let text) = url, text.isEmpty { return .failure(FileProblem("its URL is empty")) }
        return url
    }

    private func fromEnvironment(_ name: String) -> Result<String, FileProblem> {
        guard name.hasPrefix(envPrefix), name.count > envPrefix.count, name.count <= 200,
              name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
            return .failure(FileProblem("url_env must name an environment variable starting with \(envPrefix)"))
        }
        guard let value = getenv(name) else { return .failure(FileProblem("environment variable \(name) is not set")) }
        return .success(String(cString: value))
    }

    private func fromFile(_ path: String) -> Result<String, FileProblem> {
        file(path, column: "url_file").flatMap(BoundedFile.readSecret)
    }

    /// The real path of a file a row names in `column`, if it is below the directory.
    /// Resolved first, so neither `..` nor a symbolic link leads out of the directory.
    func file(_ path: String, column: String) -> Result<String, FileProblem> {
        guard path.hasPrefix("/"), let resolved = Self.realPath(path), let root = Self.realPath(directory),
              resolved.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
            return .failure(FileProblem("\(column) must be a file below \(directory)"))
        }
        return .success(resolved)
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// A rule row as read, before validation.
private struct RuleRow {
    var name: String
    var environment: String
    var metric: String
    var matchers: String
    var comparison: String
    var threshold: Double?
    var clearThreshold: Double?
    var forSeconds: Double
    var keepFiringSeconds: Double
    var severity: String
    var channel: String?
    var description: String?
    var enabled: Bool
    var muteTime: String?
    var function: String?
    var windowSeconds: Double?
    var aggregate: String?
    var aggregateBy: String?

    /// The admin portal stores CPU and memory thresholds as percentages per environment:
    /// each becomes a rule on the host collector's usage ratio.
    static func admin(_ row: [PGValue], _ settings: AlertingConfig) -> [RuleRow] {
        let environment = row[0].text
        let resources = [("cpu", "telltale_host_cpu_usage_ratio", row[1]), ("memory", "telltale_host_memory_usage_ratio", row[2])]
        return resources.compactMap { resource, metric, value -> RuleRow? in
            guard value != .null else { return nil }
            return RuleRow(
                name: "admin:\(environment):\(resource)", environment: environment, metric: metric, matchers: "", comparison: ">",
                threshold: value.number.map { $0 / 100 }, clearThreshold: nil, forSeconds: settings.adminFor.seconds,
                keepFiringSeconds: 0, severity: settings.adminSeverity, channel: row[3].optionalText,
                description: "\(resource) usage above the admin portal's \(environment) threshold", enabled: true, muteTime: nil,
                function: nil, windowSeconds: nil, aggregate: nil, aggregateBy: nil)
        }
    }

    func validate(_ catalog: RuleCatalog, compiled: [ExactString: BoundedRegex]) -> Result<AlertRule, RuleError> {
        let (channels, channelErrors) = (catalog.channels, catalog.channelErrors)
        guard !name.isEmpty else { return .failure(RuleError("empty name")) }
        guard MetricNames.isValidMetricName(metric) else { return .failure(RuleError("invalid metric name \"\(metric)\"")) }
        guard let comparison = Comparison(rawValue: comparison.trimming(" ")) else {
            return .failure(RuleError("unknown comparison \"\(comparison)\" (>, >=, <, <=, ==, !=)"))
        }
        guard let threshold, threshold.isFinite else { return .failure(RuleError("threshold must be a finite number")) }
        if let clearThreshold, !clearThreshold.isFinite { return .failure(RuleError("clear_threshold must be a finite number")) }
        guard name.count <= AlertRule.maxNameLength else {
            return .failure(RuleError("name longer than \(AlertRule.maxNameLength) characters"))
        }
        let limit = AlertRule.maxDurationSeconds
        guard let forDuration = Checked.duration(seconds: forSeconds, max: limit),
              let keepFiring = Checked.duration(seconds: keepFiringSeconds, max: limit) else {
            return .failure(RuleError("for_seconds and keep_firing_seconds must be from 0 to \(Int(limit)) (a year)"))
        }
        if let channel {
            if let problem = channelErrors[channel], channels[channel] == nil {
                return .failure(RuleError("channel \"\(channel)\" is not usable: \(problem)"))
            }
            guard channels[channel] != nil else { return .failure(RuleError("unknown channel \"\(channel)\"")) }
        }
        if let muteTime, catalog.muting.muteTimes[muteTime] == nil {
            return .failure(RuleError("mute_time \"\(muteTime.clipped(60))\" names no valid row of telltale_mute_times"))
        }
        let matchers: [LabelMatcher]
        switch LabelMatcher.parseList(self.matchers, compiled: compiled) {
        case .success(let parsed): matchers = parsed
        case .failure(let error): return .failure(error)
        }
        let expression: RuleExpression
        switch RuleExpression.parse(function: function, window: windowSeconds, aggregate: aggregate, aggregateBy: aggregateBy) {
        case .success(let parsed): expression = parsed
        case .failure(let error): return .failure(error)
        }
        return .success(AlertRule(
            name: name, environment: environment, metric: metric, matchers: matchers, comparison: comparison,
            threshold: threshold, clearThreshold: clearThreshold, forDuration: forDuration, keepFiring: keepFiring,
            severity: severity.isEmpty ? "warning" : severity.clipped(AlertRule.maxNameLength), channel: channel,
            description: description?.clipped(AlertRule.maxDescriptionLength), muteTime: muteTime, expression: expression))
    }
}

extension RuleRow {
    init(telltale row: [PGValue]) {
        name = row[0].text
        environment = row[1].text
        metric = row[2].text
        matchers = row[3].text
        comparison = row[4].text
        threshold = row[5].number
        clearThreshold = row[6].number
        forSeconds = row[7].number ?? 0
        keepFiringSeconds = row[8].number ?? 0
        severity = row[9].text
        channel = row[10].optionalText
        description = row[11].optionalText
        enabled = row[12] == .bool(true)
        muteTime = row[13].optionalText.flatMap { $0.isEmpty ? nil : $0 }
        function = row[14].optionalText
        windowSeconds = row[15].number
        aggregate = row[16].optionalText
        aggregateBy = row[17].optionalText
    }
}
