import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// The alert state machine, per rule and matching series:
/// inactive → pending (while `for` runs) → firing → resolved, with hysteresis (a firing
/// series resolves only past the clear threshold) and keep-firing (it resolves only after
/// the condition has stayed false that long). A series with no data keeps its state and is
/// shown as "no data": a source that is down never resolves an alert.
struct Evaluator: Sendable {
    enum Phase: String, Sendable {
        case pending, firing
    }

    struct SeriesState: Sendable {
        var phase: Phase
        /// Pending: when the condition started holding. Firing: when the episode began.
        var since: Double
        /// While firing but no longer meeting the condition: when it may resolve.
        var keepUntil: Double?
        var value: Double?
        var labels: Labels
        var noData = false
    }

    /// Current states by rule name, then series key (by its bytes: two series whose label
    /// values differ only in Unicode normalisation are two series, as in Prometheus).
    private(set) var states: [String: [ExactString: SeriesState]] = [:]
    /// Rules the last evaluation could not evaluate (a regex over its budget), with why.
    private(set) var errors: [String: String] = [:]
    /// Samples of the series windowed rules read.
    var samples = SampleHistory()
    /// What rules with a function or an aggregate computed at the last evaluation, by rule.
    private(set) var computed: [String: [(labels: Labels, value: Double)]] = [:]
    /// The last evaluation's posting lists, for the next.
    private var keptPostings = KeptPostings()

    init(samples: SampleHistory = SampleHistory()) {
        self.samples = samples
    }

    /// Evaluates every rule against one snapshot at `now` (Unix seconds); returns transitions.
    mutating func evaluate(_ catalog: RuleCatalog, _ snapshot: MetricSnapshot, now: Double, link: String?) -> [AlertEvent] {
        var events: [AlertEvent] = []
        // A rule deleted or disabled takes its states with it, without messages.
        states = states.filter { catalog.rules[$0.key] != nil }
        errors = [:]
        computed = [:]
        defer { samples.prune(now: now) }
        let index = SnapshotIndex(snapshot, indexing: SnapshotIndex.indexedLabels(catalog.rules.values), kept: &keptPostings)
        for rule in catalog.rules.values.sorted(by: { $0.name < $1.name }) {
            var ruleStates = states[rule.name] ?? [:]
            let found: [(labels: Labels, value: Double)]
            do {
                found = try values(rule, index, now: now)
            } catch {
                // Could not be evaluated: its states stay as they were, neither resolved nor no data.
                errors[rule.name] = error.description
                continue
            }
            let current = Dictionary(found.map { (Self.key($0.labels), $0) }, uniquingKeysWith: { first, _ in first })
            for (key, sample) in current {
                if let event = step(rule, &ruleStates[key], labels: sample.labels, value: sample.value, now: now, link: link) {
                    events.append(event)
                }
            }
            for key in ruleStates.keys where current[key] == nil {
                if ruleStates[key]?.phase == .pending {
                    ruleStates[key] = nil  // a condition that cannot be seen cannot keep holding
                } else {
                    ruleStates[key]?.noData = true
                }
            }
            states[rule.name] = ruleStates
        }
        return events
    }

    /// The rule's series, through its function and aggregate.
    private mutating func values(_ rule: AlertRule, _ index: SnapshotIndex, now: Double)
        throws(BoundedRegex.BudgetExceeded) -> [(labels: Labels, value: Double)]
    {
        let matched = try rule.series(in: index)
        let expression = rule.expression
        if expression.function.isWindowed { samples.record(rule.metric, matched, window: expression.window, now: now) }
        let found = expression.apply(matched, history: samples, ruleMetric: rule.metric, matchers: rule.matchers, now: now)
        if expression.isComputed { computed[rule.name] = found }
        return found
    }

    private func step(_ rule: AlertRule, _ state: inout SeriesState?, labels: Labels, value: Double, now: Double,
                      link: String?) -> AlertEvent? {
        guard var current = state else {
            guard rule.fires(value) else { return nil }
            state = SeriesState(phase: .pending, since: now, value: value, labels: labels)
            return promote(rule, &state, now: now, link: link)
        }
        current.value = value
        current.noData = false
        switch current.phase {
        case .pending:
            state = rule.fires(value) ? current : nil
            return state == nil ? nil : promote(rule, &state, now: now, link: link)
        case .firing:
            guard rule.clears(value) else {
                current.keepUntil = nil
                state = current
                return nil
            }
            let keepUntil = current.keepUntil ?? now + rule.keepFiring.seconds
            guard now >= keepUntil else {
                current.keepUntil = keepUntil
                state = current
                return nil
            }
            state = nil
            return event(rule, current, status: .resolved, now: now, link: link)
        }
    }

    /// Pending becomes firing once the condition has held for the rule's `for` duration.
    private func promote(_ rule: AlertRule, _ state: inout SeriesState?, now: Double, link: String?) -> AlertEvent? {
        guard var current = state, current.phase == .pending, now - current.since >= rule.forDuration.seconds else { return nil }
        current.phase = .firing
        current.since = now
        state = current
        return event(rule, current, status: .firing, now: now, link: link)
    }

    private func event(_ rule: AlertRule, _ state: SeriesState, status: AlertEvent.Status, now: Double, link: String?) -> AlertEvent {
        AlertEvent(rule: rule.name, environment: rule.environment, severity: rule.severity, status: status,
                   metric: rule.expression.text(rule.metric, rule.matchers),
                   comparison: rule.comparison.rawValue, threshold: rule.threshold, value: state.value,
                   labels: AlertEvent.clippedLabels(state.labels),
                   description: rule.description, startsAt: state.since, endsAt: status == .resolved ? now : nil, link: link)
    }

    /// Firing series this replica saw fire that no leader recorded (it fired while this replica
    /// followed): a new leader announces them.
    func unrecordedFiring(_ catalog: RuleCatalog, recorded: Set<ExactString>, now: Double, link: String?) -> [AlertEvent] {
        firingEvents(catalog, now: now, link: link).filter { !recorded.contains($0.identity) }
    }

    /// Every firing series, as the event that announced it (for group messages and reminders).
    func firingEvents(_ catalog: RuleCatalog, now: Double, link: String?) -> [AlertEvent] {
        states.flatMap { ruleName, series -> [AlertEvent] in
            guard let rule = catalog.rules[ruleName] else { return [] }
            return series.values.filter { $0.phase == .firing }.map { event(rule, $0, status: .firing, now: now, link: link) }
        }
    }

    /// Adopts firing episodes another replica recorded, so this one resolves them rather
    /// than announcing them again.
    mutating func adopt(firing rows: [(rule: String, seriesKey: String, since: Double, value: Double?, labels: Labels)]) {
        for row in rows {
            states[row.rule, default: [:]][ExactString(row.seriesKey)] = SeriesState(
                phase: .firing, since: row.since, value: row.value, labels: row.labels, noData: true)
        }
    }

    static func key(_ labels: Labels) -> ExactString {
        ExactString(AlertEvent.seriesKey(of: labels))
    }
}
