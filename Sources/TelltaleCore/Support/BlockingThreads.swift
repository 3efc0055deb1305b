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

    /// Runs `work` on one of the threads; `failure` describes the pool's own errors (it was
    /// shut down) in the caller's error type.
    package func run<T: Sendable, Failure: Error>(
        _ work: @escaping @Sendable () throws(Failure) -> T, failure: (String) -> Failure
    ) async throws(Failure) -> T {
        do {
            return try await pool.runIfActive(work)
        } catch let error as Failure {
            throw error
        } catch {
            throw failure("\(error)")
        }
    }

    /// Runs `work` on one of the threads; nil only if the pool was shut down.
    package func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T? {
        try? await pool.runIfActive(work)
    }
}
