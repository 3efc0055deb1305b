import Foundation
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// One message to one channel: the alerts of one group at one flush (firing and resolved),
/// or a reminder of those still firing. Every receiver renders this; the outbox stores it as
/// JSON in `telltale_notifications.event`.
struct AlertNotification: Codable, Sendable, Equatable {
    /// The group, as canonical label text of `groupLabels` (see `AlertEvent.seriesKey`).
    var groupKey: String
    /// The labels the channel groups by, with their values for this group.
    var groupLabels: [String: String]
    /// Firing first, then resolved; each sorted by rule and series.
    var alerts: [AlertEvent]
    /// True for a reminder (`repeat_interval`) of alerts already announced.
    var isRepeat: Bool
    /// Alerts of the group that fire but are silenced or muted (not listed).
    var heldFiring: Int?

    /// A message about one transition: a group of one, keyed by its rule and series.
    init(single event: AlertEvent) {
        groupKey = AlertEvent.identityText(rule: event.rule, seriesKey: event.seriesKey)
        groupLabels = ["alertname": event.rule]
        alerts = [event]
        isRepeat = false
    }

    init(groupKey: String, groupLabels: [String: String], alerts: [AlertEvent], isRepeat: Bool) {
        self.groupKey = groupKey
        self.groupLabels = groupLabels
        self.alerts = alerts.sorted { first, second in
            let (firstFires, secondFires) = (first.status != .resolved, second.status != .resolved)
            if firstFires != secondFires { return firstFires }
            return (first.rule, first.seriesKey) < (second.rule, second.seriesKey)
        }
        self.isRepeat = isRepeat
    }

    var firing: [AlertEvent] { alerts.filter { $0.status != .resolved } }
    var resolved: [AlertEvent] { alerts.filter { $0.status == .resolved } }

    /// "firing" while any alert of the group fires (listed or held), else "resolved".
    var status: AlertEvent.Status {
        if alerts.contains(where: { $0.status == .test }) { return .test }
        return firing.isEmpty && (heldFiring ?? 0) == 0 ? .resolved : .firing
    }
}

extension AlertNotification {
    func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// Reads a stored message; a row written before grouping holds one transition.
    static func decode(_ text: String) -> AlertNotification? {
        if let notification = try? JSONDecoder().decode(AlertNotification.self, from: Data(text.utf8)) { return notification }
        return AlertEvent.decode(text).map(AlertNotification.init(single:))
    }
}
