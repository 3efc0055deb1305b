import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// The families alerting adds to `/metrics`.
enum AlertMetrics {
    static let state = MetricDescriptor(
        "telltale_alert_state", .gauge,
        help: "1 for each series of a rule that is pending, firing, firing but silenced or muted, or firing with no data (label alertstate), like Prometheus' ALERTS.")
    static let threshold = MetricDescriptor("telltale_alert_threshold", .gauge, help: "Threshold of each rule in force.")
    static let firing = MetricDescriptor("telltale_alerts_firing", .gauge, help: "Series currently firing, over all rules.")
    static let ruleErrors = MetricDescriptor(
        "telltale_alert_rule_errors", .gauge, help: "1 for a rule whose current row is invalid (its last good version stays in force) or that could not be evaluated.")
    static let notifications = MetricDescriptor(
        "telltale_notifications", .counter, help: "Delivery attempts by channel and outcome: delivered, rate_limited, retried, failed.")
    static let queueDepth = MetricDescriptor(
        "telltale_notification_queue_depth", .gauge, help: "Notifications in the outbox not yet delivered, by channel.")
    static let channelFailing = MetricDescriptor(
        "telltale_notification_channel_failing", .gauge, help: "1 when a channel's receiver refused the last notification for good (4xx).")
    static let leader = MetricDescriptor(
        "telltale_alerting_leader", .gauge, help: "1 on the replica that holds the advisory lock and sends notifications.")
    static let unrecorded = MetricDescriptor(
        "telltale_alert_transitions_unrecorded", .gauge,
        help: "Transitions the leader evaluated but could not yet write to the outbox (retried at every evaluation).")
    static let value = MetricDescriptor(
        "telltale_alert_value", .gauge,
        help: "What a rule with a function or an aggregate computed at the last evaluation, per resulting series (label rule).")
    static let samples = MetricDescriptor(
        "telltale_alert_samples", .gauge, help: "Samples Telltale keeps for windowed rules (bounded by alerting.max_samples).")
    static let samplesRefused = MetricDescriptor(
        "telltale_alert_samples_refused", .counter,
        help: "Samples not kept because alerting.max_samples was reached (their series evaluate as no data).")
    static let evaluationDuration = MetricDescriptor(
        "telltale_alert_evaluation_duration_seconds", .gauge,
        help: "How long the last evaluation of every rule took (like Prometheus' prometheus_rule_group_last_duration_seconds).",
        unit: "seconds")
    static let databaseUp = MetricDescriptor(
        "telltale_alerting_database_up", .gauge, help: "Whether the alerting database answered the last reload.")

    static func families(catalog: RuleCatalog, evaluator: Evaluator, now: Double, leader: Bool, databaseUp: Bool,
                         notifications: FamilyBuilder, queueDepths: [String: Int], failing: Set<String>,
                         unrecordedCount: Int, evaluationSeconds: Double?) -> [MetricFamily] {
        var stateFamily = FamilyBuilder(state)
        var thresholds = FamilyBuilder(threshold)
        var firingCount = 0
        for rule in catalog.rules.values {
            let ruleLabels: Labels = ["rule": rule.name, "severity": rule.severity, "environment": rule.environment]
            thresholds.set(rule.threshold, ["rule": rule.name])
            for series in (evaluator.states[rule.name] ?? [:]).values {
                let phase = series.noData ? "nodata" : series.phase == .firing && catalog.mutes(rule, AlertEvent.clippedLabels(series.labels), at: now)
                    ? "silenced" : series.phase.rawValue
                stateFamily.set(1, series.labels.merging(ruleLabels).adding("alertstate", phase))
                if series.phase == .firing { firingCount += 1 }
            }
        }
        var firingFamily = FamilyBuilder(firing)
        firingFamily.set(Double(firingCount))
        var errors = FamilyBuilder(ruleErrors)
        // Invalid rows, and rules that could not be evaluated (a regex over its match budget).
        for name in Set(catalog.ruleErrors.keys).union(evaluator.errors.keys) { errors.set(1, ["rule": name]) }
        var depth = FamilyBuilder(queueDepth)
        var failingFamily = FamilyBuilder(channelFailing)
        for name in catalog.channels.keys {
            depth.set(Double(queueDepths[name] ?? 0), ["channel": name])
            failingFamily.set(failing.contains(name) ? 1 : 0, ["channel": name])
        }
        var leaderFamily = FamilyBuilder(self.leader)
        leaderFamily.set(leader ? 1 : 0)
        var database = FamilyBuilder(Self.databaseUp)
        database.set(databaseUp ? 1 : 0)
        var pending = FamilyBuilder(Self.unrecorded)
        pending.set(Double(unrecordedCount))
        return ([stateFamily, thresholds, firingFamily, errors, notifications, depth, failingFamily, leaderFamily, database, pending]
            + expressionFamilies(evaluator) + [evaluationFamily(evaluationSeconds)]).map { $0.build() }
    }

    private static func expressionFamilies(_ evaluator: Evaluator) -> [FamilyBuilder] {
        var values = FamilyBuilder(value)
        for (rule, series) in evaluator.computed {
            for item in series { values.set(item.value, item.labels.adding("rule", rule)) }
        }
        var kept = FamilyBuilder(samples)
        kept.set(Double(evaluator.samples.count))
        var refused = FamilyBuilder(samplesRefused)
        refused.set(Double(evaluator.samples.refused))
        return [values, kept, refused]
    }

    private static func evaluationFamily(_ seconds: Double?) -> FamilyBuilder {
        var duration = FamilyBuilder(evaluationDuration)
        // To the millisecond: an idle leader's evaluations then look the same, and publish no change.
        if let seconds { duration.set((seconds * 1000).rounded(.up) / 1000) }
        return duration
    }
}
