import Logging
import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// Leadership: one replica holds a session-level advisory lock and is the only one to record
/// and deliver; the others evaluate for their own metrics and take over when its session ends.
extension AlertingService {
    /// `pg_try_advisory_lock` key shared by every replica ("telltale" in ASCII).
    static let leaderLockKey = "128034866668645"

    /// Tries for the advisory lock when not holding it on the current connection; a new
    /// leader first adopts the firing episodes its predecessor recorded.
    func checkLeadership() async throws(PostgresError) {
        let generation = await client.generation
        guard !state.withLock({ $0.leader && $0.leaderGeneration == generation }) else { return }
        state.withLock { $0.leader = false }
        let result = try await client.query("SELECT pg_try_advisory_lock($1::bigint)", parameters: [Self.leaderLockKey],
                                            timeouts: config.timeouts)
        guard result.rows.first?.first == .bool(true) else { return }
        let firing = try await outbox.firing()
        let currentGeneration = await client.generation
        state.withLock { state in
            let recorded = Set(firing.map { ExactString(AlertEvent.identityText(rule: $0.rule, seriesKey: $0.seriesKey)) })
            state.unsaved += state.evaluator.unrecordedFiring(state.catalog, recorded: recorded, now: now().seconds,
                                                              link: config.externalURL)
            state.evaluator.adopt(firing: firing.map { row in
                (row.rule, row.seriesKey, row.since, row.value, Self.labels(fromKey: row.seriesKey))
            })
            state.leader = true
            state.leaderGeneration = currentGeneration
            // The predecessor may have left rows behind.
            state.needDelivery(at: 0)
        }
        logger.info("became the alerting leader")
    }

    /// Reads `{a="x",b="y"}` back into labels (the key is written by `AlertEvent.seriesKey`).
    static func labels(fromKey key: String) -> Labels {
        guard case .success(let matchers) = LabelMatcher.parseList(String(key.dropFirst().dropLast())) else { return .none }
        return Labels(matchers.map { ($0.name, $0.value) })
    }
}
