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
        var request = jsonRequest(to: requestURL, body: payload(notification, idempotencyKey: idempotencyKey).bytes,
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
    func payload(_ notification: AlertNotification, idempotencyKey: String) -> JSONValue {
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
    static func payload(_ event: AlertEvent) -> JSONValue {
        var fields: [JSONValue] = [
            ["title": "Value", "value": .string(event.valueText), "short": true],
            ["title": "Threshold", "value": .string(event.conditionText.clipped(300)), "short": true],
            ["title": "Environment", "value": .string(event.environment), "short": true],
            ["title": "Severity", "value": .string(event.severity), "short": true],
        ]
        if !event.labels.isEmpty {
            fields.append(["title": "Labels", "value": .string(event.labelsText.clipped(2000)), "short": false])
        }
        var attachment: [String: JSONValue] = [
            "color": .string(Channel.colour(event.status).hex),
            "title": .string(event.title.clipped(250)),
            "text": .string((event.description ?? "").clipped(3000)),
            "fields": .array(fields),
            "footer": "Telltale",
            "ts": .number(Double(Checked.int64(event.status == .resolved ? event.endsAt ?? event.startsAt : event.startsAt) ?? 0)),
        ]
        if let link = event.link { attachment["title_link"] = .string(link) }
        return ["text": .string(event.title.clipped(3000)), "attachments": [.object(attachment)]]
    }
}

/// Discord webhook: one embed (title ≤ 256, description ≤ 4096, field values ≤ 1024).
enum DiscordMessage {
    static func payload(_ event: AlertEvent) -> JSONValue {
        var fields: [JSONValue] = [
            ["name": "Value", "value": .string(event.valueText.clipped(1024)), "inline": true],
            ["name": "Threshold", "value": .string(event.conditionText.clipped(1024)), "inline": true],
            ["name": "Environment", "value": .string(event.environment.clipped(1024)), "inline": true],
            ["name": "Severity", "value": .string(event.severity.clipped(1024)), "inline": true],
        ]
        if !event.labels.isEmpty {
            fields.append(["name": "Labels", "value": .string(event.labelsText.clipped(1024)), "inline": false])
        }
        var embed: [String: JSONValue] = [
            "title": .string(event.title.clipped(256)),
            "description": .string((event.description ?? event.conditionText).clipped(2048)),
            "color": .int(Channel.colour(event.status).decimal),
            "fields": .array(fields),
            "timestamp": .string(UnixTime(seconds: event.endsAt ?? event.startsAt).iso8601),
            "footer": ["text": "Telltale"],
        ]
        if let link = event.link { embed["url"] = .string(link) }
        return ["username": "Telltale", "embeds": [.object(embed)]]
    }
}

/// Microsoft Teams Workflows: a message carrying an Adaptive Card (kept far below 28 KB).
enum TeamsMessage {
    static func payload(_ event: AlertEvent) -> JSONValue {
        var facts: [JSONValue] = [
            ["title": "Value", "value": .string(event.valueText)],
            ["title": "Threshold", "value": .string(event.conditionText.clipped(500))],
            ["title": "Environment", "value": .string(event.environment)],
            ["title": "Severity", "value": .string(event.severity)],
        ]
        if !event.labels.isEmpty { facts.append(["title": "Labels", "value": .string(event.labelsText.clipped(4000))]) }
        var body: [JSONValue] = [
            ["type": "TextBlock", "text": .string(event.title.clipped(500)), "weight": "Bolder", "size": "Medium", "wrap": true,
             "color": event.status == .firing ? "Attention" : "Good"],
        ]
        if let description = event.description {
            body.append(["type": "TextBlock", "text": .string(description.clipped(4000)), "wrap": true])
        }
        body.append(["type": "FactSet", "facts": .array(facts)])
        var card: [String: JSONValue] = [
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard", "version": "1.4", "body": .array(body),
        ]
        if let link = event.link { card["actions"] = [["type": "Action.OpenUrl", "title": "Open Telltale", "url": .string(link)]] }
        return ["type": "message",
                "attachments": [["contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": nil, "content": .object(card)]]]
    }
}

/// A generic JSON webhook, shaped like Alertmanager's webhook payload (version 4) so that
/// receivers written for Alertmanager can read it.
enum WebhookMessage {
    /// Alerts listed in one payload; the rest are counted in `truncatedAlerts`.
    static let maxAlerts = 100

    static func payload(_ notification: AlertNotification, receiver: String, key: String) -> JSONValue {
        let listed = notification.alerts.prefix(maxAlerts)
        let alerts = listed.map(alert)
        let labels = listed.map(\.routingLabels)
        let annotations = listed.map(Self.annotations)
        let status = notification.status == .resolved ? "resolved" : "firing"
        return [
            "version": "4", "status": .string(status), "receiver": .string(receiver),
            "groupKey": .string(notification.groupKey), "groupLabels": .strings(notification.groupLabels),
            "commonLabels": .strings(common(labels)), "commonAnnotations": .strings(common(annotations)),
            "externalURL": .string(notification.alerts.first?.link ?? ""),
            "alerts": .array(alerts), "truncatedAlerts": .int(notification.alerts.count - listed.count),
            "idempotencyKey": .string(key), "repeat": .bool(notification.isRepeat),
        ]
    }

    private static func alert(_ event: AlertEvent) -> JSONValue {
        [
            "status": event.status == .resolved ? "resolved" : "firing", "labels": .strings(event.routingLabels),
            "annotations": .strings(annotations(event)), "startsAt": .string(iso(event.startsAt)),
            "endsAt": .string(event.endsAt.map(iso) ?? "0001-01-01T00:00:00Z"), "generatorURL": .string(event.link ?? ""),
            "fingerprint": .string(AlertEvent.identityText(rule: event.rule, seriesKey: event.seriesKey)),
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

    private static func iso(_ seconds: Double) -> String { UnixTime(seconds: seconds).iso8601 }
}
