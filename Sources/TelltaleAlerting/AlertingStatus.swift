import TelltaleCore

/// What `/` shows about alerting.
public struct AlertingStatus: Sendable {
    public struct RuleRow: Sendable {
        public let name: String
        public let state: String
        public let error: String?
    }

    public struct ChannelRow: Sendable {
        public let name: String
        public let kind: String
        public let lastNotification: String
        public let failing: Bool
    }

    public var leader = false
    public var databaseError: String?
    public var rules: [RuleRow] = []
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
        status.channels = state.catalog.channels.values.sorted { $0.name < $1.name }.map { channel in
            AlertingStatus.ChannelRow(name: channel.name, kind: channel.kind.rawValue,
                                      lastNotification: state.lastNotification[channel.name] ?? "none",
                                      failing: state.failingChannels.contains(channel.name))
        } + state.catalog.channelErrors.keys.sorted().filter { state.catalog.channels[$0] == nil }.map {
            AlertingStatus.ChannelRow(name: $0, kind: "?", lastNotification: state.catalog.channelErrors[$0] ?? "", failing: true)
        }
        return status
    }

    private static func summary(_ states: [String: Evaluator.SeriesState]?, rule: AlertRule?, catalog: RuleCatalog, now: Double) -> String {
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
