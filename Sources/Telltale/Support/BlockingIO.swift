import NIOPosix

/// Threads for blocking system calls (reading /proc, statvfs) made by collectors. Swift
/// concurrency runs on the event loops, which must never block: a watched pid file on a
/// hung NFS mount would otherwise stall every request served by that loop.
enum BlockingIO {
    private static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        return pool
    }()

    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(work)
    }
}
