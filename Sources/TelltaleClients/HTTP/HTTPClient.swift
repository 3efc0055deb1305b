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
/// `threads` handles, each keeping up to `CurlTransfer.idleConnections` idle connections
/// (see there for how long).
public final class HTTPClient: Sendable {
    private let threads: BlockingThreads
    /// Handles not in use, the most recently used last: taking that one first keeps the
    /// fewest handles (and connections) warm.
    private let idle = Mutex<[CurlTransfer]>([])

    public init(threads: Int) {
        self.threads = BlockingThreads(count: threads)
    }

    public func send(_ request: OutboundRequest) async throws(OutboundHTTPError) -> OutboundResponse {
        do {
            return try await threads.run { () throws(OutboundHTTPError) in
                let transfer = try self.takeTransfer()
                defer { self.idle.withLock { $0.append(transfer) } }
                return try transfer.perform(request)
            }
        } catch let error as OutboundHTTPError {
            throw error
        } catch {
            throw OutboundHTTPError(kind: .other, message: "\(error)")
        }
    }

    private func takeTransfer() throws(OutboundHTTPError) -> CurlTransfer {
        if let kept = idle.withLock({ $0.popLast() }) { return kept }
        return try CurlTransfer()
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
