import TelltaleClients
import TelltaleCore
import TelltaleMetrics

extension AlertNotification {
    /// One line about the whole message: the alert's own title for a group of one, else the
    /// counts and the group's labels, e.g. `[FIRING:2, RESOLVED:1] alertname=disk-full`.
    var headline: String {
        if alerts.count == 1, let only = alerts.first { return only.title }
        var counts: [String] = []
        if !firing.isEmpty { counts.append("\(status == .test ? "TEST" : "FIRING"):\(firing.count)") }
        if !resolved.isEmpty { counts.append("RESOLVED:\(resolved.count)") }
        let labels = groupLabels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        return "[\(counts.joined(separator: ", "))] \(labels)"
    }
}

extension AlertEvent {
    /// One alert as a line of a list: `disk-full {mount="/"}: value 97 (disk_used > 90)`.
    var summaryLine: String { "\(rule) \(seriesKey): value \(valueText) (\(conditionText))" }
}

/// PagerDuty Events API v2: `trigger` while any alert of the group fires, `resolve` once all
/// have resolved, under one `dedup_key` per channel and group, so that PagerDuty keeps one
/// incident per group. The routing key is the channel's secret and travels in the body only.
enum PagerDutyMessage {
    static let defaultEndpoint = "https://events.pagerduty.com/v2/enqueue"
    /// Alerts listed in `custom_details`; PagerDuty takes events of up to 512 KB.
    static let maxListedAlerts = 50

    static func payload(_ notification: AlertNotification, channel: String, routingKey: String) -> JSONValue {
        var event: [String: JSONValue] = [
            "routing_key": .string(routingKey),
            "event_action": notification.status == .resolved ? "resolve" : "trigger",
            "dedup_key": .string(dedupKey(channel: channel, groupKey: notification.groupKey)),
        ]
        // PagerDuty reads only the key of a resolve.
        guard notification.status != .resolved, let first = notification.alerts.first else { return .object(event) }
        event["payload"] = [
            "summary": .string(notification.headline.clipped(1024)),
            "source": .string(first.environment.isEmpty ? "telltale" : first.environment.clipped(255)),
            "severity": .string(severity(notification.firing.map(\.severity))),
            "timestamp": .string(UnixTime(seconds: first.startsAt).iso8601),
            "component": .string(first.rule.clipped(255)),
            "class": .string(first.metric),
            "custom_details": details(notification),
        ]
        event["client"] = "Telltale"
        if let link = first.link {
            event["client_url"] = .string(link)
            event["links"] = [["href": .string(link), "text": "Telltale"]]
        }
        return .object(event)
    }

    /// Derived from the channel and group only (a hash: the group's labels may be long), so
    /// every message of a group, from any replica, names the same incident.
    static func dedupKey(channel: String, groupKey: String) -> String {
        "telltale-" + Digest.sha256Hex(channel + "\n" + groupKey)
    }

    /// PagerDuty's four severities, from the most severe of the alerts' own; a severity it
    /// does not know counts as `warning`, Telltale's default.
    static func severity(_ severities: [String]) -> String {
        let ranked = ["info", "warning", "error", "critical"]
        let ranks = severities.map { severity -> Int in
            switch severity.lowercased() {
            case "critical", "page", "fatal", "emergency": 3
            case "error", "major", "high": 2
            case "info", "informational", "low", "none", "ok": 0
            default: 1
            }
        }
        return ranked[ranks.max() ?? 1]
    }

    /// A routing (integration) key: 32 characters in practice; printable, without spaces.
    static func isRoutingKey(_ key: String) -> Bool {
        (1...128).contains(key.count) && key.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 0x20 && $0.value < 0x7F }
    }

    private static func details(_ notification: AlertNotification) -> JSONValue {
        let listed = notification.alerts.prefix(maxListedAlerts)
        var details: [String: JSONValue] = [
            "firing": .strings(listed.filter { $0.status != .resolved }.map(\.summaryLine)),
            "resolved": .strings(listed.filter { $0.status == .resolved }.map(\.summaryLine)),
            "group": .string(AlertEvent.seriesKey(notification.groupLabels)),
        ]
        if notification.alerts.count > listed.count { details["omitted"] = .int(notification.alerts.count - listed.count) }
        if let description = notification.alerts.first?.description { details["description"] = .string(description) }
        return .object(details)
    }
}

/// Alertmanager's API v2: `POST /api/v2/alerts` with a JSON array of alerts. Alertmanager
/// groups, deduplicates and routes them itself; an alert stays firing until its `endsAt`.
enum AlertmanagerMessage {
    static let path = "/api/v2/alerts"
    static let maxURLs = 10
    /// Alerts per request, as Prometheus batches them.
    static let batchSize = 64

    /// The URLs of a channel's secret: separated by commas or white space.
    static func urls(_ secret: String) -> [String] {
        secret.split { $0 == "," || $0.isWhitespace }.map(String.init)
    }

    /// The alerts endpoint of an Alertmanager URL, which may carry a route prefix
    /// (`http://host/alertmanager`) or already be the endpoint.
    static func endpoint(_ url: String) -> String {
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        return base.hasSuffix(path) ? base : base + path
    }

    /// One alert: firing (or a test) until `validUntil`, resolved at its `endsAt`.
    static func alert(_ event: AlertEvent, validUntil: Double) -> JSONValue {
        // Empty values are dropped, as Prometheus does: an empty label is no label.
        var labels = event.labels.filter { !$0.value.isEmpty }
        labels["alertname"] = event.rule
        labels["severity"] = event.severity
        labels["environment"] = event.environment
        var annotations = [
            "summary": "\(event.rule) (\(event.environment), \(event.severity)): \(event.conditionText)",
            "value": event.valueText,
            "threshold": event.conditionText,
        ]
        if let description = event.description { annotations["description"] = description }
        let endsAt = event.status == .resolved ? event.endsAt ?? validUntil : validUntil
        var alert: [String: JSONValue] = [
            "labels": .strings(labels), "annotations": .strings(annotations),
            "startsAt": .string(UnixTime(seconds: event.startsAt).iso8601), "endsAt": .string(UnixTime(seconds: endsAt).iso8601),
        ]
        if let link = event.link { alert["generatorURL"] = .string(link) }
        return .object(alert)
    }

    static func body(_ alerts: [JSONValue]) -> [UInt8] { JSONValue.array(alerts).bytes }
}
