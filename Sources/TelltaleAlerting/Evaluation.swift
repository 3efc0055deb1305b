import Logging
import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// Evaluation: reload the rules when due, keep or take the lead, evaluate against the store's
/// snapshot and, on the leader, record the transitions in the outbox.
extension AlertingService {
    func evaluateOnce() async {
        do throws(PostgresError) {
            try await reloadIfDue()
            try await checkLeadership()
            state.withLock { $0.databaseError = nil }
        } catch {
            state.withLock { $0.databaseError = error.message }
            throttled.warning("alerting database unavailable", ["problem": "\(error.message)"])
        }
        // Evaluated outside the lock: matching takes time, and `/`, the metrics and the
        // delivery loop read this state meanwhile. This loop is the evaluator's only writer.
        let snapshot = store.snapshot
        var (evaluator, catalog) = state.withLock { ($0.evaluator, $0.catalog) }
        let started = ContinuousClock.now
        let fresh = evaluator.evaluate(catalog, snapshot, now: now().seconds, link: config.externalURL)
        let took = ContinuousClock.now - started
        let (events, leader) = state.withLock { [evaluator] state in
            state.evaluator = evaluator
            state.evaluationSeconds = took.seconds
            state.unsaved += fresh
            return (state.unsaved, state.leader)
        }
        let evaluatedAt = now().seconds
        alertmanagerEvaluated(fresh, evaluator, catalog, leader: leader) { event in
            catalog.rules[event.rule].map { catalog.mutes($0, event.labels, at: evaluatedAt) } ?? false
        }
        for event in fresh where event.status != .test {
            logger.info("alert \(event.status.rawValue)", metadata: ["rule": "\(event.rule)", "series": "\(event.seriesKey)"])
        }
        if leader && !events.isEmpty {
            do throws(PostgresError) {
                try await outbox.record(events, catalog: catalog)
                let recordedAt = now().seconds
                state.withLock { state in
                    state.unsaved.removeFirst(min(events.count, state.unsaved.count))
                    state.needDelivery(at: recordedAt)
                }
            } catch {
                throttled.warning("could not record alert transitions; will retry", ["problem": "\(error.message)"])
            }
        } else if !leader {
            // Followers evaluate for their own metrics; the leader records and sends.
            state.withLock { $0.unsaved.removeAll() }
        }
        await publishMetrics()
    }

    /// Reloads every interval, and at once when a trigger NOTIFYed a change of rules or channels.
    private func reloadIfDue() async throws(PostgresError) {
        let notified = try await client.notified(on: "telltale_rules", timeouts: config.timeouts)
        let (due, previous) = state.withLock { state in
            (notified || state.lastReload.map { now().seconds - $0 >= config.interval.seconds } ?? true, state.catalog)
        }
        guard due else { return }
        let catalog = try await RuleLoader(settings: config).load(client, previous: previous)
        let reloadedAt = now().seconds
        state.withLock { state in
            state.catalog = catalog
            state.lastReload = reloadedAt
            // A channel may have been enabled or fixed: its queue is worth a look.
            state.needDelivery(at: reloadedAt)
        }
    }
}
