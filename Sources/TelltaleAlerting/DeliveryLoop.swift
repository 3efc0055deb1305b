import Logging
import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// Delivery, on the leader only: the outbox is read when something may be waiting in it (a
/// record, a change of leader, a reload of the channels, a row's retry time), not polled.
extension AlertingService {
    /// How often the loop checks whether the outbox is due: the delay of a fresh notification.
    static let deliveryTick = Duration.seconds(1)

    func deliveryLoop() async {
        while (try? await Task.sleep(for: Self.deliveryTick)) != nil {
            let time = now().seconds
            let due = state.withLock { state -> Bool in
                guard state.leader, let due = state.deliveryDue, due <= time else { return false }
                state.deliveryDue = nil
                return true
            }
            guard due else { continue }
            do throws(PostgresError) {
                try await deliverPending()
            } catch {
                state.withLock { $0.needDelivery(at: time + Self.deliveryTick.seconds) }
                throttled.warning("could not read the notification outbox", ["problem": "\(error.message)"])
            }
        }
    }

    /// Writes the group messages that are due, then sends. Each channel is a queue: its
    /// oldest row goes first, and a row waiting for a retry holds back the rows behind it, so
    /// a resolved message never overtakes its firing one.
    private func deliverPending() async throws(PostgresError) {
        try await writeDueMessages()
        let pending = try await outbox.pending()
        let channels = state.withLock { $0.catalog.channels }
        let byChannel = Dictionary(grouping: pending, by: \.channel)
        let next = await withTaskGroup(of: Double?.self) { group in
            for (name, rows) in byChannel {
                group.addTask { await self.deliver(rows, to: channels[name]) }
            }
            return await group.compactMap { $0 }.min()
        }
        if let next { state.withLock { $0.needDelivery(at: next) } }
        // Read after sending, so that the gauge shows what is left, not what was there.
        let depths = try await outbox.queueDepths()
        state.withLock { $0.queueDepths = depths }
        await publishMetrics()
    }

    /// Sends a channel's rows in order until one must wait; returns when the channel next
    /// needs the loop: a row's retry time, now when the whole page went (more may be behind
    /// it), nil when nothing waits (or the channel is disabled, until a reload).
    private func deliver(_ rows: [Outbox.Pending], to channel: Channel?) async -> Double? {
        let deliverer = Deliverer(http: http, timeout: config.deliveryTimeout)
        for row in rows {
            guard row.nextAttempt <= now().seconds else { return row.nextAttempt }
            guard let channel, channel.enabled else { return nil }  // a disabled channel keeps its queue
            let retryAt: Double?
            do throws(PostgresError) {
                guard let notification = row.notification else {
                    // Written by another version, or edited by hand: it can never be sent,
                    // and left in place it would hold back the channel for good.
                    try await outbox.markFailed(row.id, error: "the stored event could not be read")
                    continue
                }
                let outcome = await deliverer.send(notification, key: row.key, to: channel)
                retryAt = try await settle(row, outcome)
                recordOutcome(outcome, channel: channel.name, notification: notification)
            } catch {
                throttled.warning("could not update the outbox", ["problem": "\(error.message)"])
                return now().seconds + Self.deliveryTick.seconds
            }
            if let retryAt { return retryAt }
        }
        return rows.count >= Outbox.pageSize ? now().seconds : nil
    }

    /// Writes an attempt's outcome to the outbox; returns when the row is due again, nil if done.
    private func settle(_ row: Outbox.Pending, _ outcome: DeliveryOutcome) async throws(PostgresError) -> Double? {
        switch outcome {
        case .delivered:
            try await outbox.markDelivered(row.id)
            return nil
        case .permanent(let reason):
            try await outbox.markFailed(row.id, error: reason)
            return nil
        case .rateLimited(let after):
            try await outbox.retry(row.id, after: after, error: "rate limited")
            return now().seconds + after.seconds
        case .transient(let reason):
            let after = Deliverer.backoff(attempts: row.attempts)
            try await outbox.retry(row.id, after: after, error: reason)
            return now().seconds + after.seconds
        }
    }

    private func recordOutcome(_ outcome: DeliveryOutcome, channel: String, notification: AlertNotification) {
        let time = now()
        let at = time.iso8601
        state.withLock { state in
            state.notifications.add(1, ["channel": channel, "outcome": outcome.label])
            state.lastNotification[channel] = "\(notification.summary): \(outcome.label) at \(at)"
            state.recordAttempt(channel, delivered: outcome.isDelivered, at: time.seconds)
            switch outcome {
            case .delivered: state.failingChannels.remove(channel)
            case .permanent: state.failingChannels.insert(channel)
            case .rateLimited, .transient: break
            }
        }
        if case .permanent(let reason) = outcome {
            logger.error("channel refused a notification; marked failing", metadata: ["channel": "\(channel)", "problem": "\(reason)"])
        }
    }
}

extension AlertingService {
    /// Writes the group messages that are due (see `GroupPlanner`) and asks for the loop again
    /// when the next may be due.
    private func writeDueMessages() async throws(PostgresError) {
        let waiting = try await outbox.waiting()
        let lastSent = try await outbox.lastSent()
        let time = now().seconds
        let (catalog, firing) = state.withLock { state in
            // Not what is still being recorded: it would be listed now and announced again
            // when its transition is read.
            let unrecorded = Set(state.unsaved.map(\.identity))
            return (state.catalog, state.evaluator.firingEvents(state.catalog, now: time, link: config.externalURL)
                .filter { !unrecorded.contains($0.identity) })
        }
        let (flushes, nextDue) = GroupPlanner(catalog: catalog, now: time).plan(waiting: waiting, lastSent: lastSent, firing: firing)
        for flush in flushes { try await outbox.write(flush, at: time) }
        if let nextDue { state.withLock { $0.needDelivery(at: nextDue) } }
    }
}

extension AlertingService.State {
    /// Asks the delivery loop to read the outbox at `time` (Unix seconds) or earlier.
    mutating func needDelivery(at time: Double) {
        deliveryDue = min(deliveryDue ?? time, time)
    }
}
