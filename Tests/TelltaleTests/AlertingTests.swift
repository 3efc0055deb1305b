import TelltaleMetrics
import Testing
@testable import Telltale
@testable import TelltaleAlerting
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore
@testable import TelltaleServer

@Suite struct MatcherTests {
    @Test func parsesEveryOperatorAndEscapes() throws {
        let matchers = try LabelMatcher.parseList(#"queue="emails", state=~"wait.*",env!="dev",x!~"a\"b""#).get()
        #expect(matchers.map(\.description) == [#"queue="emails""#, #"state=~"wait.*""#, #"env!="dev""#, #"x!~"a"b""#])
        let labels: Labels = ["queue": "emails", "state": "waiting", "env": "prod"]
        #expect(try matchers.prefix(3).allSatisfy { try $0.matches(labels) })
    }

    @Test func regexesMatchWholeValues() throws {
        let matcher = try LabelMatcher.parseList(#"state=~"wait""#).get()[0]
        #expect(try !matcher.matches(["state": "waiting"]))
        #expect(try matcher.matches(["state": "wait"]))
    }

    /// Regression: `(a+)+$` against 100 `a`s and a `b` froze the whole process (Swift's Regex
    /// backtracks without limit, and it ran under the alerting lock).
    @Test func catastrophicPatternsRunOutOfBudgetInsteadOfHanging() throws {
        let matcher = try LabelMatcher.parseList(#"svc=~"(a+)+$""#).get()[0]
        #expect(throws: BoundedRegex.BudgetExceeded.self) {
            try matcher.matches(["svc": String(repeating: "a", count: 100) + "b"])
        }
        #expect(try matcher.matches(["svc": "aaaa"]))
    }

    @Test func evaluatorReportsARuleOverBudgetAndKeepsItsStates() throws {
        let matchers = try LabelMatcher.parseList(#"svc=~"(a+)+$""#).get()
        let rule = AlertRule(name: "slow", environment: "prod", metric: "level", matchers: matchers, comparison: .greater,
                             threshold: 1, clearThreshold: nil, forDuration: .zero, keepFiring: .zero, severity: "warning",
                             channel: nil, description: nil)
        var catalog = RuleCatalog()
        catalog.rules["slow"] = rule
        var builder = FamilyBuilder(MetricDescriptor("level", .gauge, help: "h"))
        builder.set(5, ["svc": String(repeating: "a", count: 100) + "b"])
        var evaluator = Evaluator()
        let events = evaluator.evaluate(catalog, MetricSnapshot(families: [builder.build()]), now: 0, link: nil)
        #expect(events.isEmpty)
        #expect(evaluator.errors["slow"]?.contains("match budget") == true)
    }

    @Test func regexesAreCompiledOncePerPattern() throws {
        let first = try LabelMatcher.parseList(#"a=~"x.*""#).get()[0]
        let again = try LabelMatcher.parseList(#"a=~"x.*""#, compiled: [ExactString("x.*"): first.regex!]).get()[0]
        #expect(again.regex === first.regex)
        // A pattern edited from NFC to NFD is a new pattern, compiled anew.
        let composed = try LabelMatcher.parseList("a=~\"caf\u{E9}\"").get()[0]
        let decomposed = try LabelMatcher.parseList("a=~\"cafe\u{301}\"", compiled: [ExactString("caf\u{E9}"): composed.regex!]).get()[0]
        #expect(decomposed.regex !== composed.regex)
        #expect(try decomposed.matches(["a": "cafe\u{301}"]) && !(try decomposed.matches(["a": "caf\u{E9}"])))
    }

    @Test func rejectsMalformedMatchers() {
        for bad in [#"queue=emails"#, #"queue"#, #"queue=~"(""#, #"1x="a""#, #"queue="open"#] {
            #expect((try? LabelMatcher.parseList(bad).get()) == nil, "\(bad)")
        }
        #expect((try? LabelMatcher.parseList("").get())?.isEmpty == true)
    }
}

@Suite struct EvaluatorTests {
    func rule(_ comparison: Comparison = .greater, threshold: Double = 10, clear: Double? = nil,
              for duration: Duration = .zero, keep: Duration = .zero) -> AlertRule {
        AlertRule(name: "r", environment: "prod", metric: "level", matchers: [], comparison: comparison, threshold: threshold,
                  clearThreshold: clear, forDuration: duration, keepFiring: keep, severity: "critical", channel: "c",
                  description: nil)
    }

    func snapshot(_ value: Double?) -> MetricSnapshot {
        guard let value else { return MetricSnapshot(families: []) }
        var level = FamilyBuilder(MetricDescriptor("level", .gauge, help: "h"))
        level.set(value, ["host": "a"])
        return MetricSnapshot(families: [level.build()])
    }

    /// Runs values at one-second steps and returns the transitions as "t:status".
    func run(_ rule: AlertRule, _ values: [Double?]) -> [String] {
        var evaluator = Evaluator()
        let catalog = RuleCatalog(rules: [rule.name: rule])
        return values.enumerated().flatMap { second, value in
            evaluator.evaluate(catalog, snapshot(value), now: Double(second), link: nil).map { "\(second):\($0.status.rawValue)" }
        }
    }

    @Test func firesAfterForAndResolvesOnce() {
        #expect(run(rule(for: .seconds(2)), [5, 11, 12, 13, 14, 5, 5]) == ["3:firing", "5:resolved"])
    }

    @Test func pendingThatStopsHoldingNeverFires() {
        #expect(run(rule(for: .seconds(3)), [11, 12, 5, 11, 12, 5]).isEmpty)
    }

    @Test func hysteresisIgnoresFlappingBetweenThresholdAndClear() {
        #expect(run(rule(clear: 8), [11, 9, 11, 9, 7]) == ["0:firing", "4:resolved"])
    }

    @Test func keepFiringDelaysResolution() {
        #expect(run(rule(keep: .seconds(2)), [11, 5, 11, 5, 5, 5]) == ["0:firing", "5:resolved"])
    }

    @Test func missingDataNeverResolves() {
        var evaluator = Evaluator()
        let catalog = RuleCatalog(rules: ["r": rule()])
        #expect(evaluator.evaluate(catalog, snapshot(11), now: 0, link: nil).map(\.status) == [.firing])
        #expect(evaluator.evaluate(catalog, snapshot(nil), now: 1, link: nil).isEmpty)
        #expect(evaluator.states["r"]?.values.first?.noData == true)
        #expect(evaluator.evaluate(catalog, snapshot(5), now: 2, link: nil).map(\.status) == [.resolved])
    }

    @Test func lessThanRulesWithClearThreshold() {
        #expect(run(rule(.less, threshold: 1, clear: 3), [5, 0.5, 2, 0.9, 4]) == ["1:firing", "4:resolved"])
    }

    @Test func adoptedEpisodeKeepsItsStartSoTheResolveMatchesIt() {
        var evaluator = Evaluator()
        let labels: Labels = ["host": "a"]
        evaluator.adopt(firing: [("r", AlertEvent.seriesKey(of: labels), 100, 12, labels)])
        let events = evaluator.evaluate(RuleCatalog(rules: ["r": rule()]), snapshot(5), now: 200, link: nil)
        #expect(events.map(\.status) == [.resolved])
        #expect(events.first?.startsAt == 100)
    }

    @Test func aNewLeaderAnnouncesOnlyWhatNoLeaderRecorded() {
        var evaluator = Evaluator()
        let catalog = RuleCatalog(rules: ["r": rule()])
        _ = evaluator.evaluate(catalog, snapshot(11), now: 0, link: nil)
        let key = AlertEvent.seriesKey(of: ["host": "a"])
        #expect(evaluator.unrecordedFiring(catalog, recorded: [ExactString("r|\(key)")], now: 1, link: nil).isEmpty)
        #expect(evaluator.unrecordedFiring(catalog, recorded: [], now: 1, link: nil).map(\.status) == [.firing])
    }

    @Test func seriesKeysRoundTripThroughLabels() {
        let labels: Labels = ["queue": "we\"ird\\name", "b": "line\nbreak"]
        #expect(AlertingService.labels(fromKey: AlertEvent.seriesKey(of: labels)) == labels)
    }
}

@Suite struct DeliveryTests {
    @Test func retryAfterFromHeaderOrDiscordBody() {
        #expect(RetryAfter.parse(.with(429, headers: ["retry-after": "2"])) == .seconds(2))
        #expect(RetryAfter.parse(.with(429, body: #"{"retry_after": 1.5}"#)) == .milliseconds(1500))
        #expect(RetryAfter.parse(.with(429)) == nil)
    }

    /// Regression: `inf`, `nan` and huge values from a third party trapped converting to Int64.
    @Test func retryAfterFromOutsideNeverTraps() {
        for hostile in ["inf", "-inf", "nan", "1e20", "-1e20", "9.3e15", "1e308", "-0"] {
            let wait = RetryAfter.parse(.with(429, headers: ["retry-after": hostile]))
            #expect(wait.map { $0 >= .zero && $0 <= .seconds(3600) } ?? true, "\(hostile)")
        }
        #expect(RetryAfter.parse(.with(429, headers: ["retry-after": "inf"])) == .seconds(3600))
        #expect(RetryAfter.parse(.with(429, headers: ["retry-after": "-5"])) == .zero)
        #expect(RetryAfter.parse(.with(429, body: #"{"retry_after": 1e400}"#)).map { $0 <= .seconds(3600) } ?? true)
    }

    @Test func checkedConversionsRejectWhatDoesNotFit() {
        #expect(Checked.int64(.infinity) == nil)
        #expect(Checked.int64(.nan) == nil)
        #expect(Checked.int64(1e19) == nil)
        #expect(Checked.int64(-2.7) == -2)
        #expect(Checked.duration(seconds: 1e300, max: 86400) == nil)
        #expect(Checked.duration(seconds: -1, max: 86400) == nil)
        #expect(Checked.duration(seconds: 1.5, max: 86400) == .milliseconds(1500))
        #expect(Checked.clampedDuration(seconds: 1e16, max: 60) == .seconds(60))
    }

    @Test func backoffGrowsAndIsCapped() {
        #expect(Deliverer.backoff(attempts: 0) <= .milliseconds(1500))
        #expect(Deliverer.backoff(attempts: 20) <= .seconds(450))
        #expect(Deliverer.backoff(attempts: 20) >= .seconds(150))
    }

    @Test func payloadsStayWithinPlatformLimits() throws {
        let labels = Dictionary(uniqueKeysWithValues: (0..<200).map { ("label_\($0)", String(repeating: "v", count: 100)) })
        let event = AlertEvent(rule: String(repeating: "r", count: 500), environment: "prod", severity: "critical", status: .firing,
                               metric: "m", comparison: ">", threshold: 1, value: 2, labels: labels,
                               description: String(repeating: "d", count: 10_000), startsAt: 0, endsAt: nil, link: "http://x/")
        let discord = try #require(DiscordMessage.payload(event)["embeds"]?.array?.first)
        #expect((discord["title"]?.string ?? "").count <= 256)
        #expect((discord["description"]?.string ?? "").count <= 4096)
        let fields = try #require(discord["fields"]?.array)
        #expect(fields.count <= 25 && fields.allSatisfy { ($0["value"]?.string ?? "").count <= 1024 })
        #expect(TeamsMessage.payload(event).bytes.count < 28_000)
        #expect(SlackMessage.payload(event).bytes.count < 40_000)
    }
}
