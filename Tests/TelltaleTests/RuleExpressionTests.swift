import TelltaleMetrics
import Testing
@testable import TelltaleAlerting
@testable import TelltaleClients
@testable import TelltaleCore

/// Windowed functions and aggregation against values worked out by hand with PromQL's rules.
@Suite struct RuleExpressionTests {
    static func expression(_ function: RuleExpression.Function, window: Double = 60, aggregate: String? = nil, by: String? = nil)
        -> RuleExpression
    {
        try! RuleExpression.parse(function: function.rawValue, window: function.isWindowed ? window : nil, aggregate: aggregate,
                                  aggregateBy: by).get()
    }

    static func samples(_ pairs: [(Double, Double)]) -> ArraySlice<Sample> { pairs.map { Sample(time: $0.0, value: $0.1) }[...] }

    @Test func increaseAddsBackCounterResets() {
        let samples = Self.samples([(0, 0), (10, 10), (20, 20), (30, 5), (40, 15), (50, 25), (60, 35)])
        #expect(Self.expression(.increase).reduce(samples, now: 60) == 55)
        #expect(Self.expression(.rate).reduce(samples, now: 60) == 55.0 / 60)
        #expect(Self.expression(.delta).reduce(samples, now: 60) == 35)
    }

    @Test func extrapolatesToTheWindowsEdgesAsPrometheusDoes() {
        // Samples 15 s from both edges, 10 s apart: stretched by half an interval each way,
        // except that a counter is not stretched below zero (10 s back from its first 10).
        let samples = Self.samples([(15, 10), (25, 20), (35, 30), (45, 40)])
        #expect(Self.expression(.delta).reduce(samples, now: 60) == 40)
        #expect(Self.expression(.increase).reduce(samples, now: 60) == 45)
        #expect(Self.expression(.increase).reduce(Self.samples([(15, 10)]), now: 60) == nil, "one sample has no increase")
    }

    @Test func overTimeFunctions() {
        let samples = Self.samples([(0, 4), (10, 1), (20, 7)])
        #expect(Self.expression(.avgOverTime).reduce(samples, now: 20) == 4)
        #expect(Self.expression(.minOverTime).reduce(samples, now: 20) == 1)
        #expect(Self.expression(.maxOverTime).reduce(samples, now: 20) == 7)
    }

    @Test func aggregatesByLabels() {
        let series: [(labels: Labels, value: Double)] = [
            (["queue": "a", "state": "failed"], 2), (["queue": "a", "state": "waiting"], 3), (["queue": "b", "state": "failed"], 5),
        ]
        let byQueue = RuleExpression.aggregated(series, .sum, by: ["queue"])
        #expect(byQueue.map(\.labels) == [["queue": "a"], ["queue": "b"]])
        #expect(byQueue.map(\.value) == [5, 5])
        #expect(RuleExpression.aggregated(series, .count, by: []).map(\.value) == [3])
        #expect(RuleExpression.aggregated(series, .max, by: ["state"]).map(\.value) == [5, 3])
        #expect(RuleExpression.aggregated(series, .avg, by: []).map(\.value) == [10.0 / 3])
    }

    @Test func absentIsOneWithTheEqualityLabelsThenZero() throws {
        let matchers = try LabelMatcher.parseList(#"job="api",instance=~"a.*""#).get()
        let absent = Self.expression(.absent)
        let none = absent.apply([], history: SampleHistory(), ruleMetric: "up", matchers: matchers, now: 0)
        #expect(none.map(\.labels) == [["job": "api"]] && none.map(\.value) == [1])
        let some = absent.apply([(["job": "api"], 1)], history: SampleHistory(), ruleMetric: "up", matchers: matchers, now: 0)
        #expect(some.map(\.value) == [0])
    }

    @Test func historyKeepsOnlyWhatAWindowNeedsAndHonoursItsCap() {
        var history = SampleHistory(maxSamples: 1000)
        for second in 0...200 {
            history.record("m", [(["s": "a"], Double(second))], window: 60, now: Double(second))
            history.prune(now: Double(second))
        }
        #expect(history.count <= 62)
        #expect(history.samples("m", ["s": "a"], from: 140, to: 200)?.count == 61)
        var capped = SampleHistory(maxSamples: 1000)
        capped.record("m", (0..<1500).map { (Labels([("s", "\($0)")]), 1.0) }, window: 60, now: 0)
        #expect(capped.count == 1000)
        #expect(capped.refused == 500)
        capped.record("m", [(["s": "0"], 2.0)], window: 60, now: 5)
        #expect(capped.count == 1000, "a tracked series gets no sample past the cap either")
    }

    /// Regression: a 7-day window over a counter that changed at every collection kept every
    /// sample, far past the cap, and then dropped its oldest, shortening the window.
    @Test func longWindowsKeepOneSamplePerResolution() {
        var history = SampleHistory()
        for second in 0...1000 {
            history.record("c", [(["s": "a"], Double(second))], window: 100_000, now: Double(second))
        }
        #expect((100...120).contains(history.count), "about one per 10 s over 1,000 s, and the newest")
        #expect(history.samples("c", ["s": "a"], from: 0, to: 1000)?.last == Sample(time: 1000, value: 1000))
        history.record("c", [(["s": "a"], 3)], window: 100_000, now: 1001)
        #expect(history.samples("c", ["s": "a"], from: 0, to: 1001)?.last == Sample(time: 1001, value: 3), "a reset is kept")
    }

    @Test func windowedRuleFiresOnItsIncrease() throws {
        let rule = AlertRule(name: "ipn", environment: "prod", metric: "invalid_ipn", matchers: [], comparison: .greater, threshold: 5,
                             clearThreshold: nil, forDuration: .zero, keepFiring: .zero, severity: "critical", channel: nil,
                             description: nil, expression: Self.expression(.increase, window: 300, aggregate: "sum"))
        var catalog = RuleCatalog()
        catalog.rules["ipn"] = rule
        var evaluator = Evaluator()
        var fired: [Double] = []
        for (time, count) in [(0.0, 0.0), (60, 2), (120, 4), (180, 7), (240, 9)] {
            var builder = FamilyBuilder(MetricDescriptor("invalid_ipn", .counter, help: "h"))
            builder.set(count, ["provider": "np"])
            let events = evaluator.evaluate(catalog, MetricSnapshot(families: [builder.build()]), now: time, link: nil)
            if events.contains(where: { $0.status == .firing }) { fired.append(time) }
        }
        #expect(fired == [180])
        #expect(evaluator.computed["ipn"]?.first?.labels == Labels.none)
        // The counter started at 0 at the first sample: nothing is extrapolated before it.
        #expect(evaluator.computed["ipn"]?.first.map(\.value) == 9)
    }

    @Test func rejectsInvalidColumns() {
        let bad: [(String?, Double?, String?, String?)] = [
            ("median", nil, nil, nil), ("increase", nil, nil, nil), ("rate", 0, nil, nil), ("rate", 1e9, nil, nil),
            ("value", 60, nil, nil), ("value", nil, "median", nil), ("value", nil, nil, "queue"), ("absent", nil, "sum", nil),
            ("value", nil, "sum", "a b"), ("rate", .nan, nil, nil),
        ]
        for (function, window, aggregate, by) in bad {
            #expect(throws: RuleError.self, "\(String(describing: function)) \(String(describing: window))") {
                try RuleExpression.parse(function: function, window: window, aggregate: aggregate, aggregateBy: by).get()
            }
        }
        #expect(throws: Never.self) { try RuleExpression.parse(function: nil, window: nil, aggregate: nil, aggregateBy: "").get() }
    }

    @Test func describesItselfInPromQL() throws {
        let matchers = try LabelMatcher.parseList(#"queue="emails""#).get()
        #expect(Self.expression(.increase, window: 300, aggregate: "sum", by: "queue").text("jobs_total", matchers)
            == #"sum by (queue) (increase(jobs_total{queue="emails"}[300s]))"#)
    }
}
