import Foundation
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// A destination of notifications. Its `url` is the secret read through `url_env` or
/// `url_file`: a webhook URL, PagerDuty's routing key, the SMTP URL with its credentials, or
/// Alertmanager URLs. It never appears in logs, errors or `/`.
struct Channel: Sendable {
    enum Kind: String, Sendable, CaseIterable {
        case slack, discord, teams, webhook, pagerduty, email, alertmanager
    }

    let name: String
    let kind: Kind
    let url: String
    let enabled: Bool
    var grouping = GroupSettings()
    /// The non-secret columns of the receivers that have them (see `ReceiverSettings`).
    var settings = ReceiverSettings()

    /// The request that delivers a message, within the platform's documented size limits.
    func request(for notification: AlertNotification, idempotencyKey: String, timeout: Duration) -> OutboundRequest {
        var request = jsonRequest(to: requestURL, body: Array(Self.json(payload(notification, idempotencyKey: idempotencyKey)).utf8),
                                  timeout: timeout)
        request.headers.append("Idempotency-Key: \(idempotencyKey)")
        return request
    }

    /// A JSON POST to one of the channel's URLs: never redirected (a notification re-sent
    /// without its body is a lost one), verified with the channel's CA when it has one.
    func jsonRequest(to url: String, body: [UInt8], timeout: Duration) -> OutboundRequest {
        var request = OutboundRequest(url: url)
        request.method = "POST"
        request.followsRedirects = false
        request.totalTimeout = timeout
        request.connectTimeout = min(timeout, .seconds(5))
        request.maxBodyBytes = 64 << 10
        request.caFile = settings.caFile
        request.headers = ["Content-Type: application/json"]
        request.body = body
        return request
    }

    /// Where the request goes: PagerDuty's endpoint, since its secret is the routing key.
    private var requestURL: String {
        switch kind {
        case .discord: Self.waitingURL(url)
        case .pagerduty: settings.endpoint ?? PagerDutyMessage.defaultEndpoint
        default: url
        }
    }

    /// Discord answers with the created message (and meaningful errors) only with `?wait=true`.
    private static func waitingURL(_ url: String) -> String {
        url.contains("wait=") ? url : url + (url.contains("?") ? "&" : "?") + "wait=true"
    }

    /// One alert's message shows its details; a group's (or a reminder's) lists its alerts.
    func payload(_ notification: AlertNotification, idempotencyKey: String) -> [String: Any] {
        switch kind {
        case .webhook: return WebhookMessage.payload(notification, receiver: name, key: idempotencyKey)
        case .pagerduty: return PagerDutyMessage.payload(notification, channel: name, routingKey: url)
        // Not one JSON document to one URL: `Deliverer.send` sends these itself.
        case .email, .alertmanager: return [:]
        case .slack, .discord, .teams: break
        }
        guard notification.alerts.count == 1, !notification.isRepeat, let event = notification.alerts.first else {
            return GroupMessage.payload(notification, kind: kind)
        }
        switch kind {
        case .discord: return DiscordMessage.payload(event)
        case .teams: return TeamsMessage.payload(event)
        default: return SlackMessage.payload(event)
        }
    }

    static func json(_ object: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Red for firing, green for resolved, blue for a test.
    static func colour(_ status: AlertEvent.Status) -> (hex: String, decimal: Int) {
        switch status {
        case .firing: ("#E01E5A", 0xE01E5A)
        case .resolved: ("#2EB67D", 0x2EB67D)
        case .test: ("#36C5F0", 0x36C5F0)
        }
    }
}

/// Slack incoming webhook: a message with one attachment, whose colour bar shows the state.
enum SlackMessage {
    static func payload(_ event: AlertEvent) -> [String: Any] {
        var fields: [[String: Any]] = [
            ["title": "Value", "value": event.valueText, "short": true],
            ["title": "Threshold", "value": event.conditionText.clipped(300), "short": true],
            ["title": "Environment", "value": event.environment, "short": true],
            ["title": "Severity", "value": event.severity, "short": true],
        ]
        if !event.labels.isEmpty { fields.append(["title": "Labels", "value": event.labelsText.clipped(2000), "short": false]) }
        var attachment: [String: Any] = [
            "color": Channel.colour(event.status).hex,
            "title": event.title.clipped(250),
            "text": (event.description ?? "").clipped(3000),
            "fields": fields,
            "footer": "Telltale",
            "ts": Checked.int64(event.status == .resolved ? event.endsAt ?? event.startsAt : event.startsAt) ?? 0,
        ]
        if let link = event.link { attachment["title_link"] = link }
        return ["text": event.title.clipped(3000), "attachments": [attachment]]
    }
}

/// Discord webhook: one embed (title ≤ 256, description ≤ 4096, field values ≤ 1024).
enum DiscordMessage {
    static func payload(_ event: AlertEvent) -> [String: Any] {
        var fields: [[String: Any]] = [
            ["name": "Value", "value": event.valueText.clipped(1024), "inline": true],
            ["name": "Threshold", "value": event.conditionText.clipped(1024), "inline": true],
            ["name": "Environment", "value": event.environment.clipped(1024), "inline": true],
            ["name": "Severity", "value": event.severity.clipped(1024), "inline": true],
        ]
        if !event.labels.isEmpty { fields.append(["name": "Labels", "value": event.labelsText.clipped(1024), "inline": false]) }
        var embed: [String: Any] = [
            "title": event.title.clipped(256),
            "description": (event.description ?? event.conditionText).clipped(2048),
            "color": Channel.colour(event.status).decimal,
            "fields": fields,
            "timestamp": Date(timeIntervalSince1970: event.endsAt ?? event.startsAt).formatted(.iso8601),
            "footer": ["text": "Telltale"],
        ]
        if let link = event.link { embed["url"] = link }
        return ["username": "Telltale", "embeds": [embed]]
    }
}

/// Microsoft Teams Workflows: a message carrying an Adaptive Card (kept far below 28 KB).
enum TeamsMessage {
    static func payload(_ event: AlertEvent) -> [String: Any] {
        var facts: [[String: Any]] = [
            ["title": "Value", "value": event.valueText],
            ["title": "Threshold", "value": event.conditionText.clipped(500)],
            ["title": "Environment", "value": event.environment],
            ["title": "Severity", "value": event.severity],
        ]
        if !event.labels.isEmpty { facts.append(["title": "Labels", "value": event.labelsText.clipped(4000)]) }
        var body: [[String: Any]] = [
            ["type": "TextBlock", "text": event.title.clipped(500), "weight": "Bolder", "size": "Medium", "wrap": true,
             "color": event.status == .firing ? "Attention" : "Good"],
        ]
        if let description = event.description {
            body.append(["type": "TextBlock", "text": description.clipped(4000), "wrap": true])
        }
        body.append(["type": "FactSet", "facts": facts])
        var card: [String: Any] = [
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard", "version": "1.4", "body": body,
        ]
        if let link = event.link { card["actions"] = [["type": "Action.OpenUrl", "title": "Open Telltale", "url": link]] }
        return ["type": "message",
                "attachments": [["contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": NSNull(), "content": card]]]
    }
}

/// A generic JSON webhook, shaped like Alertmanager's webhook payload (version 4) so that
/// receivers written for Alertmanager can read it.
enum WebhookMessage {
    /// Alerts listed in one payload; the rest are counted in `truncatedAlerts`.
    static let maxAlerts = 100

    static func payload(_ notification: AlertNotification, receiver: String, key: String) -> [String: Any] {
        let listed = notification.alerts.prefix(maxAlerts)
        let alerts = listed.map(alert)
        let labels = listed.map(\.routingLabels)
        let annotations = listed.map(Self.annotations)
        let status = notification.status == .resolved ? "resolved" : "firing"
        return [
            "version": "4", "status": status, "receiver": receiver,
            "groupKey": notification.groupKey, "groupLabels": notification.groupLabels,
            "commonLabels": common(labels), "commonAnnotations": common(annotations),
            "externalURL": notification.alerts.first?.link ?? "",
            "alerts": alerts, "truncatedAlerts": notification.alerts.count - listed.count, "idempotencyKey": key,
            "repeat": notification.isRepeat,
        ]
    }

    private static func alert(_ event: AlertEvent) -> [String: Any] {
        [
            "status": event.status == .resolved ? "resolved" : "firing", "labels": event.routingLabels,
            "annotations": annotations(event), "startsAt": iso(event.startsAt),
            "endsAt": event.endsAt.map(iso) ?? "0001-01-01T00:00:00Z", "generatorURL": event.link ?? "",
            "fingerprint": "\(event.rule)|\(event.seriesKey)",
        ]
    }

    private static func annotations(_ event: AlertEvent) -> [String: String] {
        var annotations = ["summary": event.title, "value": event.valueText, "threshold": event.conditionText]
        if let description = event.description { annotations["description"] = description }
        return annotations
    }

    /// The pairs every one of the maps has.
    private static func common(_ maps: [[String: String]]) -> [String: String] {
        guard let first = maps.first else { return [:] }
        return first.filter { pair in maps.allSatisfy { $0[pair.key] == pair.value } }
    }

    private static func iso(_ seconds: Double) -> String {
        Date(timeIntervalSince1970: seconds).formatted(.iso8601)
    }
}
