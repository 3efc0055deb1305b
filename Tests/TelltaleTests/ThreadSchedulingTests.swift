import CGlibcExtras
import Foundation
import Glibc
import NIOCore
import NIOPosix
import Testing
@testable import TelltaleCore

@Suite struct ThreadSchedulingTests {
    static let batch: Int32 = 3  // SCHED_BATCH, Linux's ABI

    @Test func threadsStartedAfterBackgroundByDefaultInheritBatch() async {
        // On a thread of its own, so that the test process' threads keep their policy.
        let (own, inherited) = await withCheckedContinuation { continuation in
            Thread {
                ThreadScheduling.backgroundByDefault()
                let own = sched_getscheduler(0)
                let done = DispatchSemaphore(value: 0)
                nonisolated(unsafe) var inherited: Int32 = -1
                Thread {
                    inherited = sched_getscheduler(0)
                    done.signal()
                }.start()
                done.wait()
                continuation.resume(returning: (own, inherited))
            }.start()
        }
        #expect(own == Self.batch)
        #expect(inherited == Self.batch)
    }

    @Test func eventLoopsAreFavoured() async throws {
        // As they would be if the group had started after `backgroundByDefault()`.
        for loop in MultiThreadedEventLoopGroup.singleton.makeIterator() {
            _ = try await loop.submit { telltale_sched_policy(1) }.get()
        }
        await ThreadScheduling.favourEventLoops()
        for loop in MultiThreadedEventLoopGroup.singleton.makeIterator() {
            #expect(try await loop.submit { sched_getscheduler(0) }.get() == SCHED_OTHER)
        }
    }
}
