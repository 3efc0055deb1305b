import CGlibcExtras
import NIOCore
import NIOPosix

/// Which threads the kernel's scheduler lets in first. Scrapes are answered on the event
/// loops; everything else (collections, renders, evaluation, the C clients' threads) is
/// background work that can wait a moment for a core. Under the normal policy a background
/// thread that wakes takes the core from a running event loop, and the scrape waits for its
/// slice: with fifty providers polled each second that was most of the `/metrics` p99
/// (BENCHMARKS.md, "The whole product"). Under SCHED_BATCH a waking thread does not preempt;
/// it still gets its fair share of the cores. Neither needs a privilege.
public enum ThreadScheduling {
    /// Puts the calling thread, and every thread started from it afterwards, under
    /// SCHED_BATCH. Called first in `main`, before any thread starts, so that all inherit it.
    public static func backgroundByDefault() {
        _ = telltale_sched_policy(1)
    }

    /// Puts the event loops of NIO's shared group (the server's: Hummingbird's `Application`
    /// uses it) back under the normal policy; returns once all are.
    public static func favourEventLoops() async {
        for loop in MultiThreadedEventLoopGroup.singleton.makeIterator() {
            try? await loop.submit { _ = telltale_sched_policy(0) }.get()
        }
    }
}
