import Glibc
import NIOPosix

/// Threads of their own for work that blocks (libpq, hiredis, libcurl, file reads) or that
/// must not hold the cooperative pool (rendering): started when made, shut down when the
/// owner goes. A call that hangs holds one of these threads, nothing else.
package final class BlockingThreads: Sendable {
    private let pool: NIOThreadPool

    package init(count: Int) {
        pool = NIOThreadPool(numberOfThreads: max(1, count))
        pool.start()
    }

    deinit {
        pool.shutdownGracefully { _ in }
    }

    /// Runs `work` on one of the threads. Throws what `work` throws, `CancellationError` if
    /// the task was cancelled before the work started, or the pool's error once it is shut down.
    package func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(work)
    }

    /// Runs `work` on one of the threads; nil only if the pool was shut down.
    package func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T? {
        try? await pool.runIfActive(work)
    }

    /// The work's result, or nil when it has not finished within `limit` (a hung mount), or
    /// not even started because earlier work still holds every thread: the caller goes on,
    /// and the work keeps only its own thread until it ends.
    package func run<T: Sendable>(within limit: Duration, _ work: @escaping @Sendable () -> T) async -> T? {
        let (results, continuation) = AsyncStream.makeStream(of: T?.self, bufferingPolicy: .bufferingOldest(1))
        Task {
            continuation.yield(await run(work) ?? nil)
            continuation.finish()
        }
        let timer = Task {
            try await Task.sleep(for: limit)
            continuation.yield(nil)
        }
        defer { timer.cancel() }
        for await result in results { return result }
        return nil
    }

    /// Blocks the calling thread for `duration` (nothing if it is not positive). Only for
    /// work already on one of these threads, which pauses between attempts or renders.
    package static func pause(_ duration: Duration) {
        guard duration > .zero else { return }
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
    }
}
