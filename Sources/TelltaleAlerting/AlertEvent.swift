import Foundation
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// A state transition of one series of one rule: what the outbox stores and every platform
/// renders. Encoded as JSON in `telltale_notifications.event`.
struct AlertEvent: Codable, Sendable, Equatable {
    enum Status: String, Codable, Sendable {
        case firing, resolved, test
    }

    var rule: String
    var environment: String
    var severity: String
    var status: Status
    var metric: String
    var comparison: String
    var threshold: Double
    var value: Double?
    var labels: [String: String]
    var description: String?
    /// Unix seconds the firing episode began; identifies the episode across replicas.
    var startsAt: Double
    var endsAt: Double?
    var link: String?

    /// Label values longer than this are clipped in messages: a source may report anything.
    static let maxLabelValueLength = 1024

    static func clippedLabels(_ labels: Labels) -> [String: String] {
        Dictionary(labels.map { ($0.name, $0.value.clipped(maxLabelValueLength)) }, uniquingKeysWith: { first, _ in first })
    }

    /// The series the event is about, as canonical label text.
    var seriesKey: String { AlertEvent.seriesKey(labels) }

    /// The alert the event is about, its rule and series, compared by bytes (see `ExactString`).
    var identity: ExactString { ExactString(Self.identityText(rule: rule, seriesKey: seriesKey)) }

    /// The one spelling of an alert's identity: what a leader records from the outbox and
    /// compares with `identity`, a webhook's fingerprint and a message's group key.
    static func identityText(rule: String, seriesKey: String) -> String { "\(rule)|\(seriesKey)" }

    /// One row per transition and channel: a second writer of the same transition (another
    /// replica, a restarted one) hits the unique key instead of sending twice.
    func idempotencyKey(channel: String) -> String {
        "\(rule)|\(seriesKey)|\(Checked.int64((startsAt * 1000).rounded()) ?? 0)|\(status.rawValue)|\(channel)"
    }

    static func seriesKey(_ labels: [String: String]) -> String {
        "{" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\(quoted($0.value))" }.joined(separator: ",") + "}"
    }

    /// `seriesKey(clippedLabels(labels))` without the dictionary and its sort: a label set is
    /// already sorted by name, each name once (the evaluator keys every series it reads).
    static func seriesKey(of labels: Labels) -> String {
        "{" + labels.map { "\($0.name)=\(quoted($0.value.clipped(maxLabelValueLength)))" }.joined(separator: ",") + "}"
    }

    private static func quoted(_ value: String) -> String {
        // Most values have nothing to escape: no need for the three passes.
        guard value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") }) else { return "\"" + value + "\"" }
        return "\"" + value.replacingAll("\\", with: "\\\\").replacingAll("\"", with: "\\\"").replacingAll("\n", with: "\\n") + "\""
    }

    func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    static func decode(_ text: String) -> AlertEvent? {
        try? JSONDecoder().decode(AlertEvent.self, from: Data(text.utf8))
    }

    var title: String {
        let state = switch status {
        case .firing: "FIRING"
        case .resolved: "RESOLVED"
        case .test: "TEST"
        }
        return "[\(state)] \(rule) (\(environment), \(severity))"
    }

    var valueText: String { value.map { ExpositionEncoder.formatNumber($0) } ?? "no data" }

    var conditionText: String {
        "\(metric) \(comparison) \(ExpositionEncoder.formatNumber(threshold))"
    }

    var labelsText: String {
        labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
    }
}
