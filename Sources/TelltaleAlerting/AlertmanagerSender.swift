import Logging
import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// Alertmanager channels, the way Prometheus feeds Alertmanager rather than through the
/// outbox: Alertmanager groups, deduplicates, silences and retries itself, and it forgets
/// a firing alert once its `endsAt` passes. So the leader re-sends every firing alert routed
/// to an Alertmanager channel every `resendDelay`, valid for four times that (or four
/// evaluation intervals), and a resolved one, with its resolution time as `endsAt`, for
/// `resolvedRetention` after it resolved, in case an Alertmanager missed it.
final class AlertmanagerSender: Sendable {
    /// Prometheus' `--rules.alert.resend-delay` default.
    static let resendDelay = 60.0
    /// How long Prometheus keeps re-sending a resolved alert.
    static let resolvedRetention = 15 * 60.0

    /// Prometheus' rule: an alert is valid for 4 × max(resend delay, evaluation interval),
    /// so that three missed sends in a row do not resolve it.
    static func validity(interval: Duration) -> Double {
        4 * max(resendDelay, interval.seconds)
    }

    private let book = Mutex(AlertmanagerBook())
    private let wake: AsyncStream<Void>.Continuation
    let wakeups: AsyncStream<Void>

    init() {
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    func update(firing: [AlertmanagerBook.Routed], resolved: [AlertmanagerBook.Routed], now: Double) {
        book.withLock { $0.update(firing: firing, resolved: resolved, now: now) }
        wake.yield()
    }

    /// A replica that does not lead sends nothing and forgets what it sent: a new leader
    /// starts by sending every firing alert (Alertmanager takes them again as the same).
    func forget() {
        book.withLock { $0 = AlertmanagerBook() }
    }

    var isEmpty: Bool { book.withLock { $0.entries.isEmpty } }

    func due(now: Double) -> [String: [AlertEvent]] {
        book.withLock { $0.due(now: now) }
    }

    func settle(_ events: [AlertEvent], channel: String, accepted: Bool, now: Double, retryAfter: Double) {
        book.withLock { $0.settle(events, channel: channel, accepted: accepted, now: now, retryAfter: retryAfter) }
    }
}

/// What the leader has to send to Alertmanager channels, and when each alert is next due.
struct AlertmanagerBook: Sendable {
    typealias Routed = (channel: String, event: AlertEvent)

    struct Entry: Sendable {
        var channel: String
        var event: AlertEvent
        /// Unix seconds; 0 for an alert never sent (due at once).
        var nextSend = 0.0
    }

    /// By channel, rule and series.
    private(set) var entries: [ExactString: Entry] = [:]

    private static func key(_ channel: String, _ event: AlertEvent) -> ExactString {
        ExactString("\(channel)|\(event.rule)|\(event.seriesKey)")
    }

    /// After an evaluation: `firing` is every firing alert routed to an Alertmanager
    /// channel, `resolved` the alerts that have just resolved. A firing alert no longer
    /// there (its rule deleted, disabled, routed elsewhere, or silenced) is no longer sent:
    /// Alertmanager lets it end at its `endsAt`.
    mutating func update(firing: [Routed], resolved: [Routed], now: Double) {
        var next: [ExactString: Entry] = [:]
        for (channel, event) in firing {
            let key = Self.key(channel, event)
            var entry = entries[key].flatMap { $0.event.status == event.status && $0.event.startsAt == event.startsAt ? $0 : nil }
                ?? Entry(channel: channel, event: event)
            entry.event = event  // the latest value, for the annotations of the next send
            next[key] = entry
        }
        for (key, entry) in entries where entry.event.status == .resolved && next[key] == nil
            && now - (entry.event.endsAt ?? now) < AlertmanagerSender.resolvedRetention {
            next[key] = entry
        }
        for (channel, event) in resolved {
            next[Self.key(channel, event)] = Entry(channel: channel, event: event)
        }
        entries = next
    }

    /// The alerts due now, by channel.
    func due(now: Double) -> [String: [AlertEvent]] {
        Dictionary(grouping: entries.values.filter { $0.nextSend <= now }, by: \.channel).mapValues { $0.map(\.event) }
    }

    /// After a send: accepted by at least one Alertmanager, an alert is next due after the
    /// resend delay; otherwise after `retryAfter`. An alert that changed meanwhile (resolved,
    /// fired again) is due as it is.
    mutating func settle(_ events: [AlertEvent], channel: String, accepted: Bool, now: Double, retryAfter: Double) {
        for event in events {
            let key = Self.key(channel, event)
            guard let entry = entries[key], entry.event.status == event.status, entry.event.startsAt == event.startsAt else { continue }
            entries[key]?.nextSend = now + (accepted ? AlertmanagerSender.resendDelay : retryAfter)
        }
    }
}

extension RuleCatalog {
    /// Each rule's channel when its transitions go through the outbox: not Alertmanager
    /// channels, which `AlertmanagerSender` feeds.
    var outboxChannels: [String: String?] {
        rules.mapValues { rule in rule.channel.flatMap { channels[$0]?.kind == .alertmanager ? nil : $0 } }
    }
}

extension AlertingService {
    /// Called after each evaluation: hands Alertmanager channels their firing alerts and
    /// the ones just resolved. Only the leader sends. `isSilenced` is where silenced alerts
    /// are kept out (they are then not sent at all, as if not firing).
    func alertmanagerEvaluated(_ fresh: [AlertEvent], _ evaluator: Evaluator, _ catalog: RuleCatalog, leader: Bool,
                               isSilenced: (AlertEvent) -> Bool = { _ in false }) {
        guard leader else { return alertmanager.forget() }
        var routed = catalog
        routed.rules = catalog.rules.filter { catalog.channels[$0.value.channel ?? ""]?.kind == .alertmanager }
        guard !routed.rules.isEmpty || !alertmanager.isEmpty else { return }
        let route = { (event: AlertEvent) -> AlertmanagerBook.Routed? in
            guard let channel = routed.rules[event.rule]?.channel, !isSilenced(event) else { return nil }
            return (channel, event)
        }
        let time = now().seconds
        // Every firing series of those rules: none counts as recorded.
        let firing = evaluator.unrecordedFiring(routed, recorded: [], now: time, link: config.externalURL)
        alertmanager.update(firing: firing.compactMap(route), resolved: fresh.filter { $0.status == .resolved }.compactMap(route),
                            now: time)
    }

    /// Posts what is due whenever an evaluation has updated the book; one round at a time,
    /// so a slow Alertmanager delays only the next round.
    func alertmanagerLoop() async {
        for await _ in alertmanager.wakeups {
            let time = now().seconds
            let due = alertmanager.due(now: time)
            guard !due.isEmpty else { continue }
            let channels = state.withLock { $0.catalog.channels }
            let deliverer = Deliverer(http: http, timeout: config.deliveryTimeout)
            let validUntil = time + AlertmanagerSender.validity(interval: config.interval)
            await withTaskGroup(of: Void.self) { group in
                for (name, events) in due {
                    // A disabled channel keeps its alerts, to send once enabled.
                    guard let channel = channels[name], channel.kind == .alertmanager, channel.enabled else { continue }
                    group.addTask {
                        let outcomes = await deliverer.postAlerts(events.map { AlertmanagerMessage.alert($0, validUntil: validUntil) },
                                                                  to: channel)
                        self.alertmanager.settle(events, channel: name, accepted: outcomes.contains(where: \.isDelivered),
                                                 now: self.now().seconds, retryAfter: self.config.interval.seconds)
                        self.recordAlertmanagerOutcomes(outcomes, channel: name, alerts: events.count)
                    }
                }
            }
            await publishMetrics()
        }
    }

    /// One count per Alertmanager in `telltale_notifications_total`; the channel is failing
    /// when none accepted and one refused for good.
    private func recordAlertmanagerOutcomes(_ outcomes: [DeliveryOutcome], channel: String, alerts: Int) {
        let accepted = outcomes.filter(\.isDelivered).count
        let refused = outcomes.contains { if case .permanent = $0 { true } else { false } }
        let time = now()
        let at = time.iso8601
        state.withLock { state in
            for outcome in outcomes { state.notifications.add(1, ["channel": channel, "outcome": outcome.label]) }
            state.lastNotification[channel] = "\(alerts) alert(s) to \(accepted) of \(outcomes.count) Alertmanager(s) at \(at)"
            state.recordAttempt(channel, delivered: accepted > 0, at: time.seconds)
            if accepted > 0 {
                state.failingChannels.remove(channel)
            } else if refused {
                state.failingChannels.insert(channel)
            }
        }
        if let failure = outcomes.first(where: { !$0.isDelivered }) {
            throttled.warning("an Alertmanager did not accept alerts", ["channel": "\(channel)", "problem": "\(failure.reason)"])
        }
    }
}
