import Foundation
import TelltaleCore
import TelltaleMetrics

/// One row of the admin portal's `admin_system_health`, read from the snapshot `/metrics`
/// serves. A value that could not be read is nil (NULL in the row), never a healthy 0.
struct SystemHealthRow: Equatable, Sendable {
    /// Percent (0-100) of CPU time not idle, from `telltale_host_cpu_usage_ratio`.
    var cpuUsage: Double?
    /// Percent (0-100) of memory in use, from `telltale_host_memory_usage_ratio`.
    var memoryUsage: Double?
    /// Mean duration, in milliseconds, of the probe's requests since the previous row.
    var apiLatencyMs: Double?
    /// Percent (0-100) of the probe's requests that failed over its `error_window`.
    var apiErrorRate: Double?
    /// JSON array of the firing alerts.
    var alerts: String

    /// The columns, in the order `parameters` binds them.
    static let columns = ["cpuUsage", "memoryUsage", "apiLatencyMs", "apiErrorRate"]

    var values: [Double?] { [cpuUsage, memoryUsage, apiLatencyMs, apiErrorRate] }

    /// The columns written NULL because their value could not be read.
    var unreadColumns: [String] { zip(Self.columns, values).filter { $0.1 == nil }.map(\.0) }

    var parameters: [String?] { values.map { $0.map { String($0) } } + [alerts] }
}

/// A probe's duration histogram as last seen: latency is the mean over the requests since.
struct ProbeTotals: Equatable, Sendable {
    var count: UInt64
    var sum: Double
}

/// One firing alert as the row's `alerts` JSON lists it.
struct FiringAlert: Encodable, Equatable, Sendable {
    var rule: String
    var severity: String
    var environment: String
    var labels: [String: String]
    var value: Double?
    /// When the firing episode began, RFC 3339.
    var startsAt: String

    /// Alerts listed at most, and the largest `alerts` document: a storm of alerts must not
    /// make a row the portal cannot load. The oldest alerts are kept.
    static let maxCount = 100
    static let maxJSONBytes = 64 * 1024

    private enum CodingKeys: String, CodingKey {
        case rule, severity, environment, labels, value, startsAt
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(rule, forKey: .rule)
        try container.encode(severity, forKey: .severity)
        try container.encode(environment, forKey: .environment)
        try container.encode(labels, forKey: .labels)
        // `null` rather than a missing key, and JSON has no NaN or infinity.
        try container.encode(value.flatMap { $0.isFinite ? $0 : nil }, forKey: .value)
        try container.encode(startsAt, forKey: .startsAt)
    }

    /// The alerts as a JSON array, oldest first, within `maxCount` and `maxJSONBytes`.
    static func json(_ alerts: [FiringAlert]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var kept = Array(alerts.sorted { ($0.startsAt, $0.rule) < ($1.startsAt, $1.rule) }.prefix(maxCount))
        while true {
            if let data = try? encoder.encode(kept), data.count <= maxJSONBytes { return String(decoding: data, as: UTF8.self) }
            guard !kept.isEmpty else { return "[]" }
            kept.removeLast(max(1, kept.count / 4))
        }
    }
}

extension SystemHealthRow {
    static let cpuFamily = "telltale_host_cpu_usage_ratio"
    static let memoryFamily = "telltale_host_memory_usage_ratio"
    static let probeDurationFamily = "telltale_probe_duration_seconds"
    static let probeErrorFamily = "telltale_probe_error_ratio"

    /// The row for `snapshot`, and the probe's totals to pass as `previous` next time.
    static func read(_ snapshot: MetricSnapshot, probe: String?, previous: ProbeTotals?, alerts: [FiringAlert])
        -> (row: SystemHealthRow, totals: ProbeTotals?)
    {
        let totals = probe.flatMap { probeTotals(snapshot, probe: $0) }
        let row = SystemHealthRow(
            cpuUsage: percent(gauge(snapshot, cpuFamily, target: nil)),
            memoryUsage: percent(gauge(snapshot, memoryFamily, target: nil)),
            apiLatencyMs: totals.flatMap { meanMilliseconds(since: previous, now: $0) },
            apiErrorRate: percent(probe.flatMap { gauge(snapshot, probeErrorFamily, target: $0) }),
            alerts: FiringAlert.json(alerts))
        return (row, totals ?? previous)
    }

    /// The first finite value of a gauge family (of the probe `target`'s series if given).
    private static func gauge(_ snapshot: MetricSnapshot, _ family: String, target: String?) -> Double? {
        for series in snapshot.family(named: family)?.series ?? [] where target == nil || series.labels["target"] == target {
            if case .number(let value) = series.value, value.isFinite { return value }
        }
        return nil
    }

    private static func percent(_ ratio: Double?) -> Double? {
        ratio.map { $0 * 100 }
    }

    private static func probeTotals(_ snapshot: MetricSnapshot, probe: String) -> ProbeTotals? {
        for series in snapshot.family(named: probeDurationFamily)?.series ?? [] where series.labels["target"] == probe {
            if case .histogram(let histogram) = series.value, histogram.sum.isFinite {
                return ProbeTotals(count: histogram.count, sum: histogram.sum)
            }
        }
        return nil
    }

    /// The mean over the requests observed since `previous` (all of them when there is no
    /// previous reading or the histogram started over); nil when none was.
    private static func meanMilliseconds(since previous: ProbeTotals?, now: ProbeTotals) -> Double? {
        var base = previous ?? ProbeTotals(count: 0, sum: 0)
        if now.count < base.count { base = ProbeTotals(count: 0, sum: 0) }
        let requests = now.count - base.count
        guard requests > 0 else { return nil }
        return (now.sum - base.sum) / Double(requests) * 1000
    }
}
