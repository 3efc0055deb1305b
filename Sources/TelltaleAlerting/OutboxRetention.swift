import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// Deletes what the outbox no longer needs once it is older than `alerting.outbox_retention`,
/// on the leader only: notifications delivered or given up, transitions a message carried or
/// dropped, and groups that sent nothing for that long and have nothing waiting. Without it,
/// every message and transition ever written would stay, and each delivery round would read
/// every group ever seen.
struct OutboxRetention: Sendable {
    static let pruned = MetricDescriptor(
        "telltale_outbox_pruned_rows", .counter, help: "Outbox rows deleted past alerting.outbox_retention, by table.")
    static let pruneFailures = MetricDescriptor(
        "telltale_outbox_prune_failures", .counter, help: "Prunes of the outbox that failed (tried again at the next one).")

    /// How often the leader prunes. Old rows are not urgent; reading the tables is not free.
    static let period = Duration.seconds(600)
    /// Rows deleted per statement, and statements per table and prune at most: a backlog goes
    /// over several prunes instead of one long-running statement.
    static let batch = 1000
    static let batchesPerPrune = 10

    /// Each table's prune.
    static let prunes: [BoundedPrune] = [
        BoundedPrune("telltale_notifications", select: """
            SELECT id FROM telltale_notifications
            WHERE coalesce(delivered_at, failed_at) < now() - make_interval(secs => $1::double precision) LIMIT $2
            """, key: "id"),
        BoundedPrune("telltale_alert_transitions", select: """
            SELECT id FROM telltale_alert_transitions
            WHERE flush_id IS NOT NULL AND created_at < now() - make_interval(secs => $1::double precision) LIMIT $2
            """, key: "id"),
        // A group with a message still waiting to be sent keeps its row: a group made anew
        // numbers its messages from 1 again, and a number still in the outbox would be taken.
        BoundedPrune("telltale_alert_groups", select: """
            SELECT ctid FROM telltale_alert_groups g
            WHERE last_sent_at < now() - make_interval(secs => $1::double precision)
              AND NOT EXISTS (SELECT 1 FROM telltale_alert_transitions t
                              WHERE t.channel = g.channel AND t.group_key = g.group_key AND t.flush_id IS NULL)
              AND NOT EXISTS (SELECT 1 FROM telltale_notifications n
                              WHERE n.channel = g.channel AND n.delivered_at IS NULL AND n.failed_at IS NULL
                                AND starts_with(n.idempotency_key, 'group|' || g.channel || '|' || g.group_key || '|'))
            LIMIT $2
            """, key: "ctid"),
    ]

    let service: AlertingService

    /// What the pruner has counted, published as its families.
    private struct Counts {
        var pruned = FamilyBuilder(OutboxRetention.pruned)
        var failures = FamilyBuilder(OutboxRetention.pruneFailures)

        init() {
            for prune in OutboxRetention.prunes { pruned.add(0, ["table": prune.table]) }
            failures.add(0)
        }

        var families: [MetricFamily] { [pruned.build(), failures.build()] }
    }

    func run() async {
        var counts = Counts()
        var lastPrune: Double?
        await service.store.publish(["outbox_retention": counts.families])
        // Checked every tick, so that a new leader prunes soon after taking over.
        while (try? await Task.sleep(for: AlertingService.deliveryTick)) != nil {
            let time = service.now().seconds
            let leader = service.state.withLock { $0.leader }
            guard leader, lastPrune.map({ time - $0 >= Self.period.seconds }) ?? true else { continue }
            lastPrune = time
            await prune(&counts)
            await service.store.publish(["outbox_retention": counts.families])
        }
    }

    private func prune(_ counts: inout Counts) async {
        for prune in Self.prunes {
            for _ in 0..<Self.batchesPerPrune {
                guard let deleted = await prune.run(service.client, retention: service.config.outboxRetention, batch: Self.batch,
                                                    timeouts: service.config.timeouts, throttled: service.throttled)
                else {
                    counts.failures.add(1)
                    return
                }
                counts.pruned.add(deleted, ["table": prune.table])
                if deleted < Double(Self.batch) { break }
            }
        }
    }
}
