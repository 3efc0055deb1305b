import Foundation
import TelltaleAlerting
import TelltaleCore
import TelltaleMetrics

/// What the operator's console shows, as `/` renders it and `/api/v1/status` serves it:
/// collectors, the busiest queues, provider balances, probes and alerting. Read from the
/// store's snapshot (the values `/metrics` serves) and the collectors' and alerting's status,
/// which hold no secrets. Times are Unix seconds.
struct StatusReport: Sendable, Encodable {
    struct Collector: Sendable, Encodable {
        let name: String
        let state: String
        let lastDurationSeconds: Double?
        let lastSuccess: Double?
        let lastError: String?
    }

    struct Queue: Sendable, Encodable {
        /// The queue's identifying labels (`redis`, `prefix`, `queue`).
        let labels: [String: String]
        let up: Bool
        let paused: Bool
        /// Jobs by BullMQ state (`waiting`, `active`, `failed`…).
        let jobs: [String: Double]
        let oldestWaitingSeconds: Double?

        var waiting: Double { (jobs["waiting"] ?? 0) + (jobs["paused"] ?? 0) + (jobs["prioritized"] ?? 0) }
        var failed: Double { jobs["failed"] ?? 0 }
    }

    struct Balance: Sendable, Encodable {
        let provider: String
        let currency: String
        let balance: Double
        let pending: Double?
        let stale: Bool
        let lastSuccess: Double?
    }

    struct Probe: Sendable, Encodable {
        let target: String
        let success: Bool
        let statusCode: Double?
        let errorRatio: Double?
    }

    let version: String
    let generatedAt: Double
    let collectors: [Collector]
    /// All queues Telltale reads, of which `queues` lists the busiest.
    let queueCount: Int
    let queues: [Queue]
    let balances: [Balance]
    let probes: [Probe]
    let alerting: AlertingStatus?

    /// Queues listed at most: the top ones by waiting, by failed and by oldest waiting job,
    /// and every paused or unreadable one up to this cap.
    static let maxQueues = 30

    init(collectors: [CollectorStatus], snapshot: MetricSnapshot, alerting: AlertingStatus?, now: UnixTime) {
        version = TelltaleVersion.current
        generatedAt = now.seconds
        self.collectors = collectors.map {
            Collector(name: $0.name, state: $0.state.rawValue, lastDurationSeconds: $0.lastDuration?.seconds,
                      lastSuccess: $0.lastSuccess?.seconds, lastError: $0.lastError)
        }
        let snapshot = SnapshotValues(snapshot)
        let queues = Self.queues(snapshot)
        queueCount = queues.count
        self.queues = Self.busiest(queues)
        balances = Self.balances(snapshot)
        probes = snapshot.series("telltale_probe_success").map { labels, value in
            let target = labels["target"] ?? ""
            return Probe(target: target, success: value == 1,
                         statusCode: snapshot.value("telltale_probe_status_code", ["target": target]),
                         errorRatio: snapshot.value("telltale_probe_error_ratio", ["target": target]))
        }
        self.alerting = alerting
    }

    private static func queues(_ snapshot: SnapshotValues) -> [Queue] {
        var jobs: [Labels: [String: Double]] = [:]
        for (labels, value) in snapshot.series("telltale_queue_jobs") {
            guard let state = labels["state"] else { continue }
            jobs[labels.removing("state"), default: [:]][state] = value
        }
        let ups = snapshot.series("telltale_queue_up")
        return ups.map { labels, up in
            Queue(labels: labels.dictionary, up: up == 1, paused: snapshot.value("telltale_queue_paused", labels) == 1,
                  jobs: jobs[labels] ?? [:], oldestWaitingSeconds: snapshot.value("telltale_queue_oldest_waiting_seconds", labels))
        }
    }

    /// The queues an operator looks at first, most waiting first.
    private static func busiest(_ queues: [Queue]) -> [Queue] {
        let top = { (key: (Queue) -> Double) in queues.indices.sorted { key(queues[$0]) > key(queues[$1]) }.prefix(10) }
        var chosen = Set(top(\.waiting)).union(top(\.failed)).union(top { $0.oldestWaitingSeconds ?? 0 })
        chosen.formUnion(queues.indices.filter { queues[$0].paused || !queues[$0].up })
        return chosen.map { queues[$0] }
            .sorted { ($0.waiting, $0.failed) > ($1.waiting, $1.failed) }
            .prefix(maxQueues).map { $0 }
    }

    private static func balances(_ snapshot: SnapshotValues) -> [Balance] {
        snapshot.series("telltale_provider_balance").map { labels, value in
            let provider = ["provider": labels["provider"] ?? ""] as Labels
            return Balance(provider: labels["provider"] ?? "", currency: labels["currency"] ?? "", balance: value,
                           pending: snapshot.value("telltale_provider_pending_balance", labels),
                           stale: snapshot.value("telltale_provider_stale", provider) == 1,
                           lastSuccess: snapshot.value("telltale_provider_last_success_timestamp_seconds", provider))
        }
    }
}

extension StatusReport {
    /// The report as JSON; non-finite numbers as the strings `+Inf`, `-Inf` and `NaN`.
    static func json(_ report: StatusReport) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "+Inf", negativeInfinity: "-Inf", nan: "NaN")
        // Every value is a string, number, bool, array or dictionary of those: encoding cannot fail.
        return (try? encoder.encode(report)) ?? Data("{}".utf8)
    }
}

/// The numeric series of a snapshot by family name, for lookups by label set.
private struct SnapshotValues {
    private var families: [String: [Labels: Double]] = [:]
    private var ordered: [String: [(Labels, Double)]] = [:]

    init(_ snapshot: MetricSnapshot) {
        for family in snapshot.families {
            let series = family.series.compactMap { series -> (Labels, Double)? in
                guard case .number(let value) = series.value else { return nil }
                return (series.labels, value)
            }
            ordered[family.name] = series
            families[family.name] = Dictionary(series, uniquingKeysWith: { first, _ in first })
        }
    }

    func series(_ family: String) -> [(Labels, Double)] { ordered[family] ?? [] }

    func value(_ family: String, _ labels: Labels) -> Double? { families[family]?[labels] }
}

extension Labels {
    fileprivate func removing(_ name: String) -> Labels {
        Labels(labels.filter { $0.name != name }.map { ($0.name, $0.value) })
    }
}
