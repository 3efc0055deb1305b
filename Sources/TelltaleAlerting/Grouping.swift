import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// How a channel batches alerts into messages: the `group_*`, `repeat_interval_seconds` and
/// `mute_time` columns of `telltale_channels` (Alertmanager's route settings).
struct GroupSettings: Sendable, Equatable {
    /// Label names whose values make a group; `...` alone makes each alert its own group.
    var groupBy = ["alertname"]
    /// Seconds a new group waits for more alerts before its first message.
    var wait = 0.0
    /// Seconds between two messages of one group.
    var interval = 0.0
    /// Seconds after which alerts still firing are sent again; 0 sends no reminders.
    var repeatInterval = 0.0
    var muteTime: String?

    static let everyLabel = "..."

    static func parse(groupBy: String?, wait: Double?, interval: Double?, repeatInterval: Double?, muteTime: String?)
        -> Result<GroupSettings, RuleError>
    {
        var settings = GroupSettings()
        let names = (groupBy ?? "").split(separator: ",").map { $0.trimming(" ") }.filter { !$0.isEmpty }
        if !names.isEmpty {
            guard names == [everyLabel] || names.allSatisfy(MetricNames.isValidLabelName), names.count <= 32 else {
                return .failure(RuleError("group_by must be label names separated by commas (at most 32), or ..."))
            }
            settings.groupBy = names
        }
        for (column, value, keyPath) in [("group_wait_seconds", wait, \GroupSettings.wait),
                                         ("group_interval_seconds", interval, \GroupSettings.interval),
                                         ("repeat_interval_seconds", repeatInterval, \GroupSettings.repeatInterval)] {
            let seconds = value ?? 0
            guard seconds.isFinite, seconds >= 0, seconds <= AlertRule.maxDurationSeconds else {
                return .failure(RuleError("\(column) must be from 0 to \(Int(AlertRule.maxDurationSeconds)) (a year)"))
            }
            settings[keyPath: keyPath] = seconds
        }
        settings.muteTime = muteTime.flatMap { $0.isEmpty ? nil : $0 }
        return .success(settings)
    }

    /// The values of the grouping labels for an alert (a label it lacks is left out).
    func groupLabels(_ event: AlertEvent) -> [String: String] {
        let labels = event.routingLabels
        guard groupBy != [Self.everyLabel] else { return labels }
        return labels.filter { groupBy.contains($0.key) }
    }

    func groupKey(_ event: AlertEvent) -> String { AlertEvent.seriesKey(groupLabels(event)) }
}

extension AlertEvent {
    /// The labels silences match and channels group by: the series' own, with the rule's
    /// name as `alertname`, its severity and its environment (as Alertmanager sees them).
    var routingLabels: [String: String] {
        Self.routingLabels(labels, rule: rule, severity: severity, environment: environment)
    }

    static func routingLabels(_ labels: [String: String], rule: String, severity: String, environment: String) -> [String: String] {
        var routing = labels
        routing["alertname"] = rule
        routing["severity"] = severity
        routing["environment"] = environment
        return routing
    }

    /// When the transition happened: the start of a firing episode, the end of a resolved one.
    var transitionTime: Double { status == .resolved ? endsAt ?? startsAt : startsAt }
}

/// A transition recorded in `telltale_alert_transitions`, waiting for its group's message.
struct WaitingTransition: Sendable {
    let id: Int64
    let channel: String
    let groupKey: String
    /// Nil when the stored JSON cannot be read: dropped at the group's next message.
    let event: AlertEvent?
}

/// What one pass writes for one group: a message carrying some waiting transitions (and
/// dropping others), a reminder, or only dropped transitions.
struct GroupFlush: Sendable {
    let channel: String
    let groupKey: String
    let notification: AlertNotification?
    /// Transitions the message carries.
    let carried: [Int64]
    /// Transitions that need no message: fired and resolved while held, or unreadable.
    let dropped: [Int64]
    /// A reminder is written only if the group's last message is still this one.
    let repeatAfter: PGValue?
}

/// The waiting transitions of one series, oldest first.
private struct SeriesChanges {
    var ids: [Int64]
    var first: AlertEvent
    var last: AlertEvent

    /// The readable transitions by series, in the order of their first.
    static func of(_ waiting: [WaitingTransition]) -> [SeriesChanges] {
        var order: [ExactString] = []
        var series: [ExactString: SeriesChanges] = [:]
        for transition in waiting {
            guard let event = transition.event else { continue }
            let key = event.identity
            if series[key] == nil {
                order.append(key)
                series[key] = SeriesChanges(ids: [transition.id], first: event, last: event)
            } else {
                series[key]?.ids.append(transition.id)
                series[key]?.last = event
            }
        }
        return order.compactMap { series[$0] }
    }
}

/// Decides, on the leader, which group messages are due. Pure: the database reads and writes
/// are the caller's, and the time is a parameter.
struct GroupPlanner {
    /// By bytes, as the group's rows and PagerDuty's incidents tell groups apart: two label
    /// values that differ only in Unicode normalisation make two groups.
    struct GroupID: Hashable {
        let channel: String
        let key: String

        static func == (lhs: GroupID, rhs: GroupID) -> Bool {
            lhs.channel.hasSameBytes(as: rhs.channel) && lhs.key.hasSameBytes(as: rhs.key)
        }

        func hash(into hasher: inout Hasher) {
            channel.hashBytes(into: &hasher)
            key.hashBytes(into: &hasher)
        }
    }

    let catalog: RuleCatalog
    let now: Double

    /// Plans the messages due now; returns them and when the next one may be due.
    func plan(waiting: [WaitingTransition], lastSent: [GroupID: PGValue], firing: [AlertEvent]) -> ([GroupFlush], Double?) {
        var groups: [GroupID: (waiting: [WaitingTransition], firing: [AlertEvent])] = [:]
        for transition in waiting {
            groups[GroupID(channel: transition.channel, key: transition.groupKey), default: ([], [])].waiting.append(transition)
        }
        let routes = catalog.outboxChannels
        for event in firing {
            guard let channelName = routes[event.rule] ?? nil, let channel = catalog.channels[channelName] else { continue }
            groups[GroupID(channel: channelName, key: channel.grouping.groupKey(event)), default: ([], [])].firing.append(event)
        }
        var flushes: [GroupFlush] = []
        var nextDue: Double?
        for (id, group) in groups {
            let (flush, due) = plan(id, waiting: group.waiting, firing: group.firing, lastSent: lastSent[id])
            if let flush { flushes.append(flush) }
            if let due { nextDue = min(nextDue ?? due, due) }
        }
        return (flushes, nextDue)
    }

    private func plan(_ id: GroupID, waiting: [WaitingTransition], firing: [AlertEvent], lastSent: PGValue?) -> (GroupFlush?, Double?) {
        let settings = catalog.channels[id.channel]?.grouping ?? GroupSettings()
        let series = SeriesChanges.of(waiting)
        let held = series.filter { isMuted($0.last, settings) }
        let (flush, next) = planMessage(id, settings, waiting: waiting, series: series, heldCount: held.count, firing: firing,
                                        lastSent: lastSent)
        // A held series needs only its first and last change (whether it was announced, and
        // where it ends): the ones between go now, so a flapping silenced alert cannot pile up.
        let between = held.flatMap { $0.ids.dropFirst().dropLast() }
        guard !between.isEmpty, flush?.repeatAfter == nil else { return (flush, next) }
        return (GroupFlush(channel: id.channel, groupKey: id.key, notification: flush?.notification, carried: flush?.carried ?? [],
                           dropped: (flush?.dropped ?? []) + between, repeatAfter: nil), next)
    }

    private func planMessage(_ id: GroupID, _ settings: GroupSettings, waiting: [WaitingTransition], series: [SeriesChanges],
                             heldCount: Int, firing: [AlertEvent], lastSent: PGValue?) -> (GroupFlush?, Double?) {
        let audible = firing.filter { !isMuted($0, settings) }
        let unreadable = waiting.filter { $0.event == nil }.map(\.id)
        let ready = series.filter { !isMuted($0.last, settings) }
        let heldDue = heldCount > 0 ? nextMutingChange() : nil
        guard !ready.isEmpty || !unreadable.isEmpty else {
            return repeatIfDue(id, audible, settings, lastSent, heldDue)
        }
        let oldest = ready.map(\.first.transitionTime).min() ?? now
        let due = max(oldest + settings.wait, (lastSent?.number ?? -.infinity) + settings.interval)
        guard now >= due else { return (nil, min(due, heldDue ?? due)) }
        // Fired and resolved before any message said it fired: nothing to tell.
        let untold = ready.filter { $0.first.status == .firing && $0.last.status == .resolved }
        let told = ready.filter { !($0.first.status == .firing && $0.last.status == .resolved) }
        let repeatDue = settings.repeatInterval > 0 && !audible.isEmpty ? now + settings.repeatInterval : nil
        let next = [repeatDue, heldDue].compactMap { $0 }.min()
        let dropped = unreadable + untold.flatMap(\.ids)
        let alerts = Self.union(audible, told.map(\.last))
        guard !told.isEmpty, let first = alerts.first else {
            // Nothing new to tell: no message (a repeat of the firing ones is the reminder's job).
            return (GroupFlush(channel: id.channel, groupKey: id.key, notification: nil, carried: [], dropped: dropped, repeatAfter: nil),
                    [heldDue, settings.repeatInterval > 0 ? lastSent?.number.map { $0 + settings.repeatInterval } : nil]
                        .compactMap { $0 }.min())
        }
        var notification = AlertNotification(groupKey: id.key, groupLabels: settings.groupLabels(first), alerts: alerts, isRepeat: false)
        // Silenced alerts still fire: the group is not resolved while they do (PagerDuty keeps its incident).
        notification.heldFiring = firing.count - audible.count
        return (GroupFlush(channel: id.channel, groupKey: id.key, notification: notification, carried: told.flatMap(\.ids).sorted(),
                           dropped: dropped, repeatAfter: nil), next)
    }

    /// A reminder of the audible firing alerts once `repeat_interval` has passed since the
    /// group's last message.
    private func repeatIfDue(_ id: GroupID, _ audible: [AlertEvent], _ settings: GroupSettings, _ lastSent: PGValue?,
                             _ heldDue: Double?) -> (GroupFlush?, Double?) {
        guard settings.repeatInterval > 0, !audible.isEmpty, let lastSent, let lastSentAt = lastSent.number else { return (nil, heldDue) }
        let due = lastSentAt + settings.repeatInterval
        guard now >= due else { return (nil, min(due, heldDue ?? due)) }
        let notification = AlertNotification(groupKey: id.key, groupLabels: settings.groupLabels(audible[0]), alerts: audible, isRepeat: true)
        return (GroupFlush(channel: id.channel, groupKey: id.key, notification: notification, carried: [], dropped: [],
                           repeatAfter: lastSent), min(now + settings.repeatInterval, heldDue ?? .infinity))
    }

    /// A rule deleted since the transition cannot be muted by its rule, only by a silence.
    private func isMuted(_ event: AlertEvent, _ settings: GroupSettings) -> Bool {
        if let rule = catalog.rules[event.rule] { return catalog.mutes(rule, event.labels, at: now) }
        let names = [settings.muteTime].compactMap { $0 }
        return catalog.muting.mutes(Labels(event.routingLabels.map { ($0.key, $0.value) }), muteTimes: names, at: now)
    }

    /// When held transitions are next worth a look: the end of the first silence in force, or
    /// the next minute (mute times change on minute boundaries).
    private func nextMutingChange() -> Double {
        let nextMinute = (now / 60).rounded(.down) * 60 + 60
        return catalog.muting.silences.map(\.endsAt).filter { $0 > now }.min().map { min($0, nextMinute) } ?? nextMinute
    }

    /// The group's audible firing alerts, with the changes of this message (a change replaces
    /// the same series' entry).
    private static func union(_ firing: [AlertEvent], _ changes: [AlertEvent]) -> [AlertEvent] {
        let changed = Set(changes.map(\.identity))
        return firing.filter { !changed.contains($0.identity) } + changes
    }
}
