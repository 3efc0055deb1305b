import Foundation
import TelltaleClients
import TelltaleMetrics
import Testing
@testable import Telltale
@testable import TelltaleAlerting
@testable import TelltaleCollectors
@testable import TelltaleCore

@Suite struct SystemHealthRowTests {
    static let probe = "api"

    /// A snapshot with host usage ratios and the probe's families.
    static func snapshot(cpu: Double? = 0.25, memory: Double? = 0.5, probeDurations: [Double] = [0.1, 0.3],
                         errorRatio: Double? = 0.2, target: String = probe) -> MetricSnapshot {
        var families: [MetricFamily] = []
        for (name, value) in [(SystemHealthRow.cpuFamily, cpu), (SystemHealthRow.memoryFamily, memory)] {
            guard let value else { continue }
            var gauge = FamilyBuilder(MetricDescriptor(name, .gauge, help: ""))
            gauge.set(value)
            families.append(gauge.build())
        }
        if !probeDurations.isEmpty {
            var duration = FamilyBuilder(ProbeCollector.duration, buckets: Buckets.defaultSeconds)
            for seconds in probeDurations { duration.observe(seconds, ["target": target]) }
            families.append(duration.build())
        }
        if let errorRatio {
            var ratio = FamilyBuilder(ProbeCollector.errorRatio)
            ratio.set(errorRatio, ["target": target])
            families.append(ratio.build())
        }
        return MetricSnapshot(families: families)
    }

    @Test func percentagesAndTheProbesMeanLatency() throws {
        let (row, totals) = SystemHealthRow.read(Self.snapshot(), probe: Self.probe, previous: nil, alerts: [])
        #expect(row.cpuUsage == 25)
        #expect(row.memoryUsage == 50)
        #expect(abs(try #require(row.apiLatencyMs) - 200) < 1e-9)
        #expect(abs(try #require(row.apiErrorRate) - 20) < 1e-9)
        #expect(row.alerts == "[]")
        #expect(row.unreadColumns.isEmpty)
        #expect(totals?.count == 2)
        #expect(row.parameters.count == 5)
    }

    @Test func latencyCoversOnlyTheRequestsSinceThePreviousRow() throws {
        let previous = ProbeTotals(count: 1, sum: 0.1)
        let (row, _) = SystemHealthRow.read(Self.snapshot(probeDurations: [0.1, 0.3, 0.5]), probe: Self.probe,
                                            previous: previous, alerts: [])
        #expect(abs(try #require(row.apiLatencyMs) - 400) < 1e-9)
    }

    @Test func noRequestSinceThePreviousRowIsNullNotZero() {
        let previous = ProbeTotals(count: 2, sum: 0.4)
        let (row, totals) = SystemHealthRow.read(Self.snapshot(), probe: Self.probe, previous: previous, alerts: [])
        #expect(row.apiLatencyMs == nil)
        #expect(row.unreadColumns == ["apiLatencyMs"])
        #expect(totals == previous)
    }

    @Test func unreadableValuesAreNull() {
        let empty = MetricSnapshot(families: [])
        let (row, totals) = SystemHealthRow.read(empty, probe: Self.probe, previous: nil, alerts: [])
        #expect(row == SystemHealthRow(cpuUsage: nil, memoryUsage: nil, apiLatencyMs: nil, apiErrorRate: nil, alerts: "[]"))
        #expect(row.unreadColumns == SystemHealthRow.columns)
        #expect(row.parameters == [nil, nil, nil, nil, "[]"])
        #expect(totals == nil)
        let nan = Self.snapshot(cpu: .nan)
        #expect(SystemHealthRow.read(nan, probe: Self.probe, previous: nil, alerts: []).row.cpuUsage == nil)
    }

    @Test func anotherProbesSeriesOrNoProbeLeavesTheApiColumnsNull() {
        let other = Self.snapshot(target: "checkout")
        let (row, _) = SystemHealthRow.read(other, probe: Self.probe, previous: nil, alerts: [])
        #expect(row.apiLatencyMs == nil && row.apiErrorRate == nil)
        #expect(row.cpuUsage == 25)
        let unnamed = SystemHealthRow.read(Self.snapshot(), probe: nil, previous: nil, alerts: []).row
        #expect(unnamed.apiLatencyMs == nil && unnamed.apiErrorRate == nil)
    }

    @Test func alertsJSONListsFiringAlertsOldestFirstWithNullForNoValue() throws {
        let alerts = [
            FiringAlert(rule: "b", severity: "warning", environment: "prod", labels: ["queue": "mail"], value: .nan,
                        startsAt: "2026-11-28T10:00:00Z"),
            FiringAlert(rule: "a", severity: "critical", environment: "prod", labels: [:], value: 7,
                        startsAt: "2026-11-28T09:00:00Z"),
        ]
        let json = FiringAlert.json(alerts)
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
        #expect(parsed.map { $0["rule"] as? String } == ["a", "b"])
        #expect(parsed[0]["value"] as? Double == 7)
        #expect(parsed[1]["value"] is NSNull)
        #expect((parsed[1]["labels"] as? [String: String]) == ["queue": "mail"])
        #expect(Set(parsed[0].keys) == ["rule", "severity", "environment", "labels", "value", "startsAt"])
    }

    @Test func alertsJSONIsCapped() throws {
        let big = String(repeating: "x", count: 1000)
        let many = (0..<500).map {
            FiringAlert(rule: "r\($0)", severity: "critical", environment: "prod", labels: ["a": big, "b": big], value: 1,
                        startsAt: "2026-11-28T09:00:00Z")
        }
        let json = FiringAlert.json(many)
        #expect(json.utf8.count <= FiringAlert.maxJSONBytes)
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [Any])
        #expect(!parsed.isEmpty && parsed.count <= FiringAlert.maxCount)
    }
}

@Suite struct SystemHealthConfigTests {
    static let base = """
        probes:
          - name: api
            url: http://127.0.0.1:1/health
        alerting:
          dsn: postgres://u@h/db

        """

    @Test func offByDefault() throws {
        let config = try TelltaleConfig.parse(Self.base)
        #expect(!config.alerting.systemHealth.enabled)
        #expect(config.alerting.systemHealth.interval == .seconds(60))
        #expect(config.alerting.systemHealth.retention == .seconds(7 * 86400))
    }

    @Test func readsItsBlock() throws {
        let config = try TelltaleConfig.parse(Self.base + """
              system_health:
                enabled: true
                dsn: postgres://app@h/app
                interval: 30s
                probe: api
                retention: 2d
                statement_timeout: 3s
            """)
        let health = config.alerting.systemHealth
        #expect(health.enabled && health.dsn == "postgres://app@h/app" && health.probe == "api")
        #expect(health.interval == .seconds(30) && health.retention == .seconds(2 * 86400))
        #expect(health.timeouts.statement == .seconds(3))
    }

    @Test(arguments: [
        ("enabled: true\n    probe: api", "alerting.system_health.dsn: is required"),
        ("enabled: true\n    dsn: postgres://h/db\n    probe: nope", "alerting.system_health.probe: no probe named \"nope\""),
        ("enabled: true\n    dsn: postgres://h/db\n    interval: 1m\n    retention: 30s", "alerting.system_health.retention"),
        ("dsn: postgres://h/db\n    colour: red", "alerting.system_health.colour: unknown key"),
        ("enabled: maybe", "alerting.system_health.enabled"),
    ])
    func invalidBlocksNameTheKey(block: String, problem: String) {
        let yaml = Self.base + "  system_health:\n    " + block + "\n"
        #expect(throws: ConfigErrors.self) { try TelltaleConfig.parse(yaml) }
        do {
            _ = try TelltaleConfig.parse(yaml)
        } catch {
            #expect(error.problems.contains { $0.hasPrefix(problem) }, "\(error.problems)")
        }
    }

    @Test func needsAlertingEnabled() {
        let yaml = Self.base + "  enabled: false\n  system_health:\n    enabled: true\n    dsn: postgres://h/db\n"
        do {
            _ = try TelltaleConfig.parse(yaml)
            Issue.record("accepted system_health without alerting")
        } catch {
            #expect(error.problems.contains { $0.hasPrefix("alerting.system_health.enabled: needs alerting enabled") })
        }
    }
}
