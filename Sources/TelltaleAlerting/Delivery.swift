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

    var isDelivered: Bool {
        if case .delivered = self { true } else { false }
    }

    /// What happened, for logs and the CLI (never the channel's secret).
    var reason: String {
        switch self {
        case .delivered(let status): "delivered (\(status))"
        case .rateLimited(let after): "rate limited, retry after \(after)"
        case .transient(let reason), .permanent(let reason): reason
        }
    }

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

/// Sends one notification to one channel. Never throws; never reports the channel's secret.
struct Deliverer: Sendable {
    let http: HTTPClient
    let timeout: Duration
    static let defaultRetryAfter = Duration.seconds(5)
    /// `last_error` and the status page get at most this much of a failure's text.
    static let maxReasonLength = 300

    func send(_ notification: AlertNotification, key: String, to channel: Channel) async -> DeliveryOutcome {
        switch channel.kind {
        case .email:
            return await mail(notification, key: key, to: channel)
        case .alertmanager:
            // Outside AlertmanagerSender's loop (`test-notify`, a row queued before the channel
            // became one): one post, valid for as long as the loop would make it.
            let validUntil = UnixTime.now.seconds + AlertmanagerSender.validity(interval: .zero)
            return Self.combined(await postAlerts(notification.alerts.map { AlertmanagerMessage.alert($0, validUntil: validUntil) },
                                                  to: channel))
        case .slack, .discord, .teams, .webhook, .pagerduty:
            return await post(channel.request(for: notification, idempotencyKey: key, timeout: timeout), redactor: channel.redactor)
        }
    }

    func post(_ request: OutboundRequest, redactor: Redactor) async -> DeliveryOutcome {
        let response: OutboundResponse
        do {
            response = try await http.send(request)
        } catch {
            return .transient(redactor.redact("\(error.kind.rawValue): \(error.message)", clippedTo: Self.maxReasonLength))
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

    /// Posts alerts to each of the channel's Alertmanagers, in batches; one outcome per URL
    /// (its first batch not delivered, else delivered).
    func postAlerts(_ alerts: [JSONValue], to channel: Channel) async -> [DeliveryOutcome] {
        let batches = stride(from: 0, to: alerts.count, by: AlertmanagerMessage.batchSize).map {
            AlertmanagerMessage.body(Array(alerts[$0..<min($0 + AlertmanagerMessage.batchSize, alerts.count)]))
        }
        return await withTaskGroup(of: DeliveryOutcome.self) { group in
            for url in AlertmanagerMessage.urls(channel.url) {
                group.addTask {
                    var outcome = DeliveryOutcome.delivered(status: 200)
                    for body in batches {
                        let request = channel.jsonRequest(to: AlertmanagerMessage.endpoint(url), body: body, timeout: timeout)
                        outcome = await post(request, redactor: channel.redactor)
                        guard outcome.isDelivered else { break }
                    }
                    return outcome
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
    }

    /// Several receivers' outcomes as one: delivered when any accepted, else worth retrying
    /// when any may accept later, else refused.
    static func combined(_ outcomes: [DeliveryOutcome]) -> DeliveryOutcome {
        outcomes.first(where: \.isDelivered)
            ?? outcomes.first { if case .permanent = $0 { false } else { true } }
            ?? outcomes.first ?? .permanent("no receiver URL")
    }

    /// SMTP: a 2xx reply is a delivery, 5xx a refusal; 4xx and failures without a reply
    /// (connection, TLS, timeout) are worth retrying.
    private func mail(_ notification: AlertNotification, key: String, to channel: Channel) async -> DeliveryOutcome {
        guard let settings = channel.settings.email else { return .permanent("the channel has no email settings") }
        var mail = OutboundMail(url: channel.url, from: settings.from, recipients: settings.to,
                                message: EmailMessage.compose(notification, settings: settings, key: key, date: UnixTime.now.seconds))
        mail.requiresTLS = settings.security == .starttls
        mail.caFile = channel.settings.caFile
        mail.totalTimeout = timeout
        mail.connectTimeout = min(timeout, .seconds(5))
        do {
            return .delivered(status: try await http.sendMail(mail))
        } catch {
            let reply = error.replyCode > 0 ? "SMTP \(error.replyCode): " : ""
            let reason = channel.redactor.redact(reply + error.message, clippedTo: Self.maxReasonLength)
            return (500..<600).contains(error.replyCode) ? .permanent(reason) : .transient(reason)
        }
    }

    /// Exponential backoff with jitter for transient failures: about 1 s, 2 s, 4 s … 5 min.
    static func backoff(attempts: Int) -> Duration {
        let base = min(300, Double(1 << min(attempts, 9)))
        return .milliseconds(Int64(base * Double.random(in: 0.5...1.5) * 1000))
    }
}
