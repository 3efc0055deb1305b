import Synchronization
import TelltaleCore
import TelltaleMetrics

/// What `/` and `/api/v1/status` show about alerting. Built from rows and labels, which
/// hold no secrets: channel URLs and keys are never part of it.
public struct AlertingStatus: Sendable, Encodable {
    public struct RuleRow: Sendable, Encodable {
        public let name: String
        public let state: String
        public let error: String?
    }

    /// One series not inactive.
    public struct AlertRow: Sendable, Encodable {
        public let rule: String
        public let severity: String
        /// `pending`, `firing`, `silenced` or `nodata`.
        public let state: String
        public let value: Double?
        /// The condition, such as `> 100`.
        public let condition: String
        /// Unix seconds: since when pending, or when the firing episode began.
        public let since: Double
        public let labels: [String: String]
    }

    public struct SilenceRow: Sendable, Encodable {
        public let id: Int64
        public let matchers: String
        public let startsAt: Double
        public let endsAt: Double
    }

    public struct ChannelRow: Sendable, Encodable {
        public let name: String
        public let kind: String
        public let lastNotification: String
        public let failing: Bool
        /// Outbox rows not yet delivered.
        public var queueDepth: Int? = nil
        /// Unix seconds of the last delivery and of the last failed attempt.
        public var lastDelivery: Double? = nil
        public var lastFailure: Double? = nil
    }

    public var leader = false
    public var databaseError: String?
    public var rules: [RuleRow] = []
    public var alerts: [AlertRow] = []
    public var silences: [SilenceRow] = []
    public var channels: [ChannelRow] = []
}

extension AlertingService {
    public var status: AlertingStatus {
        // From a copy, outside the lock (see `publishMetrics`).
        let state = state.withLock { $0 }
        let time = now().seconds
        var status = AlertingStatus(leader: state.leader, databaseError: state.databaseError)
        let names = Set(state.catalog.rules.keys).union(state.catalog.ruleErrors.keys).sorted()
        status.rules = names.map { name in
            AlertingStatus.RuleRow(name: name, state: Self.summary(state.evaluator.states[name], rule: state.catalog.rules[name],
                                                                catalog: state.catalog, now: time),
                                   error: state.catalog.ruleErrors[name] ?? state.evaluator.errors[name])
        }
        status.alerts = Self.alertRows(state, now: time)
        status.silences = state.catalog.muting.silences.filter { $0.endsAt > time }.map {
            AlertingStatus.SilenceRow(id: $0.id, matchers: $0.matchers.map(\.description).joined(separator: ", "),
                                      startsAt: $0.startsAt, endsAt: $0.endsAt)
        }
        status.channels = state.catalog.channels.values.sorted { $0.name < $1.name }.map { channel in
            AlertingStatus.ChannelRow(name: channel.name, kind: channel.kind.rawValue,
                                      lastNotification: state.lastNotification[channel.name] ?? "none",
                                      failing: state.failingChannels.contains(channel.name),
                                      queueDepth: state.queueDepths[channel.name],
                                      lastDelivery: state.lastDelivery[channel.name], lastFailure: state.lastFailure[channel.name])
        } + state.catalog.channelErrors.keys.sorted().filter { state.catalog.channels[$0] == nil }.map {
            AlertingStatus.ChannelRow(name: $0, kind: "?", lastNotification: state.catalog.channelErrors[$0] ?? "", failing: true)
        }
        return status
    }

    /// Every series not inactive, firing first, then by rule and labels.
    private static func alertRows(_ state: State, now: Double) -> [AlertingStatus.AlertRow] {
        let order = ["firing": 0, "silenced": 1, "nodata": 2, "pending": 3]
        let rows = state.evaluator.states.flatMap { name, series -> [(Labels, AlertingStatus.AlertRow)] in
            guard let rule = state.catalog.rules[name] else { return [] }
            return series.values.map { series in
                let muted = series.phase == .firing && state.catalog.mutes(rule, AlertEvent.clippedLabels(series.labels), at: now)
                let shown = series.noData ? "nodata" : muted ? "silenced" : series.phase.rawValue
                return (series.labels, AlertingStatus.AlertRow(
                    rule: name, severity: rule.severity, state: shown, value: series.value,
                    condition: "\(rule.comparison.rawValue) \(rule.threshold)", since: series.since, labels: series.labels.dictionary))
            }
        }
        return rows.sorted { left, right in
            let (a, b) = (order[left.1.state] ?? 9, order[right.1.state] ?? 9)
            if a != b { return a < b }
            if left.1.rule != right.1.rule { return left.1.rule < right.1.rule }
            return left.0 < right.0
        }.map(\.1)
    }

    private static func summary(_ states: [ExactString: Evaluator.SeriesState]?, rule: AlertRule?, catalog: RuleCatalog, now: Double) -> String {
        guard let rule else { return "invalid" }
        guard let states, !states.isEmpty else { return "inactive" }
        let firing = states.values.filter { $0.phase == .firing }
        let silenced = firing.filter { catalog.mutes(rule, AlertEvent.clippedLabels($0.labels), at: now) }.count
        let noData = states.values.filter(\.noData).count
        var parts: [String] = []
        if firing.count > silenced { parts.append("firing (\(firing.count - silenced))") }
        if silenced > 0 { parts.append("silenced (\(silenced))") }
        if states.count > firing.count { parts.append("pending (\(states.count - firing.count))") }
        if noData > 0 { parts.append("no data (\(noData))") }
        return parts.joined(separator: ", ")
    }
}

extension AlertingService.State {
    /// Notes when a channel last delivered, or last failed to, for the status page.
    mutating func recordAttempt(_ channel: String, delivered: Bool, at time: Double) {
        if delivered {
            lastDelivery[channel] = time
        } else {
            lastFailure[channel] = time
        }
    }
}
