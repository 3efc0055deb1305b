import TelltaleClients
import TelltaleCore
import TelltaleMetrics

extension AlertNotification {
    /// "[FIRING:3, RESOLVED:1] queue_failed" (the group's labels when it spans rules), with
    /// "reminder" for a repeat; one alert's own title when it is alone.
    var title: String {
        if alerts.count == 1, !isRepeat, let only = alerts.first { return only.title }
        var counts: [String] = []
        if !firing.isEmpty { counts.append("FIRING:\(firing.count)") }
        if !resolved.isEmpty { counts.append("RESOLVED:\(resolved.count)") }
        let rules = Set(alerts.map(\.rule))
        let subject = rules.count == 1 ? rules.first! : groupLabels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            .joined(separator: ", ")
        return "[\(counts.joined(separator: ", "))] \(subject)\(isRepeat ? " (reminder)" : "")"
    }

    /// For the status page: what the last message was about ("firing rule" for one alert).
    var summary: String {
        if alerts.count == 1, !isRepeat, let only = alerts.first { return "\(only.status.rawValue) \(only.rule)" }
        return title.clipped(200)
    }

    /// One line per alert, as many as fit in `limit` characters, then a line counting the rest.
    func lines(limit: Int) -> String {
        var text = ""
        for (index, alert) in alerts.enumerated() {
            let line = Self.line(alert)
            let rest = alerts.count - index
            let reserve = rest > 1 ? 40 : 0
            guard text.count + line.count + 1 + reserve <= limit else {
                return text + "… and \(rest) more"
            }
            text += line + "\n"
        }
        return String(text.dropLast())
    }

    private static func line(_ alert: AlertEvent) -> String {
        let state = alert.status == .resolved ? "RESOLVED" : "FIRING"
        let labels = alert.labels.isEmpty ? "" : " {\(alert.labelsText.clipped(300))}"
        return "• \(state) \(alert.rule.clipped(100))\(labels): \(alert.valueText) (\(alert.conditionText.clipped(200)))"
    }
}

/// A group's message (or a reminder) for the chat platforms: its title and a list of its
/// alerts, within each platform's limits.
enum GroupMessage {
    static func payload(_ notification: AlertNotification, kind: Channel.Kind) -> JSONValue {
        let title = notification.title
        let link = notification.alerts.first?.link
        let colour = Channel.colour(notification.status)
        switch kind {
        case .slack:
            var attachment: [String: JSONValue] = [
                "color": .string(colour.hex), "title": .string(title.clipped(250)),
                "text": .string(notification.lines(limit: 3000)), "footer": "Telltale",
            ]
            if let link { attachment["title_link"] = .string(link) }
            return ["text": .string(title.clipped(3000)), "attachments": [.object(attachment)]]
        case .discord:
            var embed: [String: JSONValue] = [
                "title": .string(title.clipped(256)), "description": .string(notification.lines(limit: 4000)),
                "color": .int(colour.decimal), "footer": ["text": "Telltale"],
            ]
            if let link { embed["url"] = .string(link) }
            return ["username": "Telltale", "embeds": [.object(embed)]]
        default:  // Teams: the other kinds render groups themselves (see `Channel.payload`)
            var card: [String: JSONValue] = [
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
                "body": [
                    ["type": "TextBlock", "text": .string(title.clipped(500)), "weight": "Bolder", "size": "Medium", "wrap": true,
                     "color": notification.status == .firing ? "Attention" : "Good"],
                    ["type": "TextBlock", "text": .string(notification.lines(limit: 12000)), "wrap": true],
                ],
            ]
            if let link { card["actions"] = [["type": "Action.OpenUrl", "title": "Open Telltale", "url": .string(link)]] }
            return ["type": "message",
                    "attachments": [["contentType": "application/vnd.microsoft.card.adaptive", "content": .object(card)]]]
        }
    }
}
