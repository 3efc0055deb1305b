import Synchronization
import TelltaleCore
import TelltaleMetrics

/// An async lock that admits one holder at a time, waiters in arrival order.
///
/// Clients use it to keep at most one command in flight on their single connection;
/// actor isolation alone is not enough, because an actor is re-entered at every `await`.
package final class SerialGate: Sendable {
    private struct State {
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    package func acquire() async {
        await withCheckedContinuation { continuation in
            let admitted = state.withLock { state in
                if state.busy {
                    state.waiters.append(continuation)
                    return false
                }
                state.busy = true
                return true
            }
            if admitted { continuation.resume() }
        }
    }

    /// Hands the gate to the longest waiter, or opens it.
    package func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.busy = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }

}

/// Capped exponential backoff between reconnect attempts: 1 s, 2 s, 4 s … up to 30 s.
package struct ReconnectBackoff: Sendable {
    package static let base = Duration.seconds(1)
    package static let cap = Duration.seconds(30)

    private var consecutiveFailures = 0
    private(set) var retryAt: ContinuousClock.Instant?
    /// Why the last attempt failed, repeated to callers while they wait.
    private(set) var lastError = ""

    package var isWaiting: Bool { retryAt.map { ContinuousClock.now < $0 } ?? false }

    package mutating func failed(_ message: String) {
        consecutiveFailures += 1
        retryAt = .now + min(Self.cap, Self.base * (1 << min(consecutiveFailures - 1, 10)))
        lastError = message
    }

    package mutating func succeeded() {
        consecutiveFailures = 0
        retryAt = nil
    }
}
