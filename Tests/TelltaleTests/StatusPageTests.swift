import Foundation
import TelltaleMetrics
import Testing
@testable import TelltaleAlerting
@testable import TelltaleCore
@testable import TelltaleServer

@Suite struct StatusPageTests {
    static let now = UnixTime(seconds: 1_800_000_000)

    func family(_ name: String, _ series: [(Labels, Double)]) -> MetricFamily {
        MetricFamily(MetricDescriptor(name, .gauge, help: "h"), series: series.map { Series(labels: $0.0, value: .number($0.1)) })
    }

    func queue(_ name: String) -> Labels { ["redis": "default", "prefix": "bull", "queue": name] }

    /// Forty queues: the report keeps the busiest, the failing and the paused ones.
    func snapshot() -> MetricSnapshot {
        let names = (0..<40).map { "q\($0)" }
        var jobs: [(Labels, Double)] = []
        for (index, name) in names.enumerated() {
            jobs.append((queue(name).adding("state", "waiting"), Double(index)))
            jobs.append((queue(name).adding("state", "failed"), name == "q3" ? 50 : 0))
        }
        return MetricSnapshot(families: [
            family("telltale_queue_jobs", jobs),
            family("telltale_queue_up", names.map { (queue($0), $0 == "q5" ? 0 : 1) }),
            family("telltale_queue_paused", names.map { (queue($0), $0 == "q1" ? 1 : 0) }),
            family("telltale_provider_balance", [(["provider": "np", "currency": "btc"], .infinity)]),
            family("telltale_provider_stale", [(["provider": "np"], 1)]),
        ])
    }

    @Test func reportKeepsTheQueuesAnOperatorLooksAtFirst() {
        let report = StatusReport(collectors: [], snapshot: snapshot(), alerting: nil, now: Self.now)
        #expect(report.queueCount == 40)
        #expect(report.queues.count == StatusReport.maxQueues || report.queues.count < 40)
        let listed = Set(report.queues.compactMap { $0.labels["queue"] })
        #expect(listed.isSuperset(of: ["q39", "q30", "q3", "q1", "q5"]))
        #expect(report.queues.first?.labels["queue"] == "q39")
        #expect(report.balances.first?.stale == true)
    }

    @Test func jsonWritesNonFiniteNumbersAsStrings() throws {
        let report = StatusReport(collectors: [], snapshot: snapshot(), alerting: nil, now: Self.now)
        let json = try #require(try JSONSerialization.jsonObject(with: StatusReport.json(report)) as? [String: Any])
        let balances = try #require(json["balances"] as? [[String: Any]])
        #expect(balances.first?["balance"] as? String == "+Inf")
    }

    @Test func pageEscapesEverythingFromSourcesAndShowsAlerting() {
        var collector = CollectorStatus(name: "sql:main:<x>")
        collector.state = .failed
        collector.lastError = "query: <script>alert(1)</script>"
        var alerting = AlertingStatus(leader: true)
        alerting.alerts = [AlertingStatus.AlertRow(
            rule: "queue_backlog", severity: "critical", state: "firing", value: 120, condition: "> 100",
            since: Self.now.seconds - 600, labels: ["queue": "<payments>"])]
        alerting.silences = [AlertingStatus.SilenceRow(id: 7, matchers: "queue=\"emails\"", startsAt: 0, endsAt: Self.now.seconds + 3600)]
        alerting.channels = [AlertingStatus.ChannelRow(name: "ops", kind: "slack", lastNotification: "none", failing: true,
                                                       queueDepth: 3, lastDelivery: nil, lastFailure: Self.now.seconds - 30)]
        alerting.rules = [AlertingStatus.RuleRow(name: "broken", state: "invalid", error: "bad <op>")]
        let report = StatusReport(collectors: [collector], snapshot: snapshot(), alerting: alerting, now: Self.now)
        let page = StatusPage.render(report)
        #expect(!page.contains("<script>") && page.contains("&lt;script&gt;"))
        #expect(page.contains("&lt;payments&gt;") && page.contains("bad &lt;op&gt;"))
        for text in ["<h2>Alerts</h2>", "<h2>Silences</h2>", "<h2>Channels</h2>", "<h2>Rules</h2>", "10 min ago", "30 s ago",
                     "1 firing", "1 failing", "leader (sends notifications)"] {
            #expect(page.contains(text), "\(text)")
        }
    }

    @Test func agesAndNumbersReadAtAGlance() {
        #expect(StatusPage.formatAge(59) == "59 s")
        #expect(StatusPage.formatAge(3600) == "60 min")
        #expect(StatusPage.formatAge(86400 * 3) == "3 d")
        #expect(StatusPage.formatAge(.infinity) == "–")
        #expect(StatusPage.formatAge(-5) == "0 s")
        #expect(StatusPage.formatNumber(3) == "3")
        #expect(StatusPage.formatNumber(0.123456) == "0.1235")
        #expect(StatusPage.formatNumber(1e300) == "1e+300")
        #expect(StatusPage.formatNumber(.nan) == "nan")
    }
}
