import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// What became of one attempt to deliver a notification.
enum DeliveryOutcome: Sendable, Equatable {
    case delivered(status: Int)
    /// 429: come back after the receiver's Retry-After (header, or Discord's `retry_after`).
    case rateLimited(after: Duration)
    /// 5xx, 408 or a network failure: worth retrying with backoff.
    case transient(String)
    /// Any other 4xx: the request will never be accepted as it is.
    case permanent(String)

    /// The `outcome` label of `telltale_notifications_total`.
    var label: String {
        switch self {
        case .delivered: "delivered"
        case .rateLimited: "rate_limited"
        case .transient: "retried"
        case .permanent: "failed"
        }
    }
}

/// Sends one notification to one channel. Never throws; never reports the channel's URL.
struct Deliverer: Sendable {
    let http: HTTPClient
    let timeout: Duration
    static let defaultRetryAfter = Duration.seconds(5)
    /// `last_error` and the status page get at most this much of a failure's text.
    static let maxReasonLength = 300

    func send(_ notification: AlertNotification, key: String, to channel: Channel) async -> DeliveryOutcome {
        let response: OutboundResponse
        do {
            response = try await http.send(channel.request(for: notification, idempotencyKey: key, timeout: timeout))
        } catch {
            return .transient(Redactor([channel.url]).redact("\(error.kind.rawValue): \(error.message)", clippedTo: Self.maxReasonLength))
        }
        switch response.status {
        case 200..<300:
            return .delivered(status: response.status)
        case 429:
            return .rateLimited(after: RetryAfter.parse(response) ?? Self.defaultRetryAfter)
        case 408, 500...:
            return .transient("HTTP \(response.status)")
        case 300..<400:
            // An answer all the same: the receiver moved, and sending again will not change that.
            return .permanent("HTTP \(response.status): a redirect is not a delivery")
        default:
            return .permanent("HTTP \(response.status)")
        }
    }

    /// Exponential backoff with jitter for transient failures: about 1 s, 2 s, 4 s … 5 min.
    static func backoff(attempts: Int) -> Duration {
        let base = min(300, Double(1 << min(attempts, 9)))
        return .milliseconds(Int64(base * Double.random(in: 0.5...1.5) * 1000))
    }
}
