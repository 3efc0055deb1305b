import Logging
import Synchronization
import TelltaleMetrics

/// Logs a repeated identical warning once per `window`, then how often it recurred.
///
/// A database that stays down answers every retry with the same error: one line a minute
/// with a count tells an operator as much as 845 lines, and keeps the log readable.
package final class LogThrottle: Sendable {
    package static let window = Duration.seconds(60)
    /// Distinct messages remembered; beyond that the memory starts afresh.
    package static let capacity = 1000

    private struct Entry {
        var loggedAt: ContinuousClock.Instant
        var suppressed: Int
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let logger: Logger

    package init(_ logger: Logger) {
        self.logger = logger
    }

    package func warning(_ message: String, _ metadata: Logger.Metadata) {
        let key = message + "\u{0}" + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\u{0}")
        let now = ContinuousClock.now
        let repeats: Int? = entries.withLock { entries in
            if var entry = entries[key], now - entry.loggedAt < Self.window {
                entry.suppressed += 1
                entries[key] = entry
                return nil
            }
            if entries.count >= Self.capacity { entries.removeAll() }
            let suppressed = entries[key]?.suppressed ?? 0
            entries[key] = Entry(loggedAt: now, suppressed: 0)
            return suppressed
        }
        guard let repeats else { return }
        var metadata = metadata
        if repeats > 0 { metadata["repeated"] = "\(repeats) times since the last line" }
        logger.warning("\(message)", metadata: metadata)
    }
}
