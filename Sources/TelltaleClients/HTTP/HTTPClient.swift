import TelltaleCore
import TelltaleMetrics

/// Outbound HTTP (and SMTP, the other libcurl protocol Telltale speaks) on a small pool of
/// threads of its own, off the server's event loop: each request holds one thread at most
/// until its total timeout, so a hanging provider cannot delay the others while fewer than
/// `threads` requests hang at once.
public final class HTTPClient: Sendable {
    private let threads: BlockingThreads

    public init(threads: Int) {
        self.threads = BlockingThreads(count: threads)
    }

    public func send(_ request: OutboundRequest) async throws(OutboundHTTPError) -> OutboundResponse {
        do {
            return try await threads.run { () throws(OutboundHTTPError) in try CurlTransfer().perform(request) }
        } catch let error as OutboundHTTPError {
            throw error
        } catch {
            throw OutboundHTTPError(kind: .other, message: "\(error)")
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
