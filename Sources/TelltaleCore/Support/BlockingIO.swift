import TelltaleMetrics

/// Threads for blocking system calls (reading /proc, statvfs, secret files). Swift
/// concurrency's cooperative pool has one thread per core and must never block: a watched
/// pid file on a hung NFS mount would otherwise hold one of them, and with it every task
/// queued behind (collectors, alerting, the router's handlers).
package enum BlockingIO {
    private static let threads = BlockingThreads(count: 4)

    package static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await threads.run(work)
    }

    /// The work's result, or nil when it has not finished within `limit` (a hung mount):
    /// the caller goes on, and the work keeps only its own thread until it ends.
    package static func run<T: Sendable>(within limit: Duration, _ work: @escaping @Sendable () -> T) async -> T? {
        await threads.run(within: limit, work)
    }
}
