import Synchronization
import TelltaleCore
import TelltaleMetrics

/// Outbound HTTP (and SMTP, the other libcurl protocol Telltale speaks) on a small pool of
/// threads of its own, off the server's event loop: each request holds one thread at most
/// until its total timeout, so a hanging provider cannot delay the others while fewer than
/// `threads` requests hang at once.
///
/// A finished request's libcurl handle is kept for the next one, so a provider polled again
/// finds its connection (and TLS session) still open instead of connecting anew: at most
/// `keptHandles` handles, each with up to `CurlTransfer.idleConnections` idle connections;
/// those unused for `CurlTransfer.idleConnectionAge` are dropped at the next request.
public final class HTTPClient: Sendable {
    /// Enough for polls that rarely overlap; each further handle would keep connections of
    /// its own (and over TLS their memory) for requests that one of these can carry.
    static let keptHandles = 2

    private let threads: BlockingThreads
    /// Handles not in use with when each was last used, the most recent last: taking that
    /// one first keeps the fewest handles (and connections) warm.
    private let idle = Mutex<[(transfer: CurlTransfer, since: ContinuousClock.Instant)]>([])

    public init(threads: Int) {
        self.threads = BlockingThreads(count: threads)
    }

    public func send(_ request: OutboundRequest) async throws(OutboundHTTPError) -> OutboundResponse {
        do {
            return try await threads.run { () throws(OutboundHTTPError) in
                let transfer = try self.takeTransfer()
                defer { self.keep(transfer) }
                return try transfer.perform(request)
            }
        } catch let error as OutboundHTTPError {
            throw error
        } catch {
            throw OutboundHTTPError(kind: .other, message: "\(error)")
        }
    }

    /// The most recently used handle, or a new one. Handles unused too long to have a
    /// connection worth keeping are dropped (their connections closed) after the lock.
    private func takeTransfer() throws(OutboundHTTPError) -> CurlTransfer {
        let (kept, _) = idle.withLock { idle in
            let unusedSince = ContinuousClock.now - CurlTransfer.idleConnectionAge
            let stale = idle.prefix { $0.since < unusedSince }.map(\.transfer)
            idle.removeFirst(stale.count)
            return (idle.popLast()?.transfer, stale)
        }
        if let kept { return kept }
        return try CurlTransfer()
    }

    /// Keeps a handle for the next request, the least recently used one dropped beyond
    /// `keptHandles` (after the lock).
    private func keep(_ transfer: CurlTransfer) {
        _ = idle.withLock { idle -> CurlTransfer? in
            idle.append((transfer, .now))
            return idle.count > Self.keptHandles ? idle.removeFirst().transfer : nil
        }
    }

    /// Submits an email over SMTP on the same threads; returns the server's final reply code.
    public func sendMail(_ mail: OutboundMail) async throws(OutboundMailError) -> Int {
        do {
            return try await threads.run { () throws(OutboundMailError) in try CurlMail().send(mail) }
        } catch let error as OutboundMailError {
            throw error
        } catch {
            throw OutboundMailError(replyCode: 0, message: "\(error)")
        }
    }
}

/// What the provider and probe collectors ask of HTTP, so that a scripted fake can stand in
/// for a server in unit tests.
package protocol HTTPSending: Sendable {
    func send(_ request: OutboundRequest) async throws(OutboundHTTPError) -> OutboundResponse
}

extension HTTPClient: HTTPSending {}
