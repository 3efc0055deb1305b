import TelltaleMetrics
import Testing
@testable import TelltaleAlerting
@testable import TelltaleClients
@testable import TelltaleCore

/// The evaluation's index finds exactly the series a scan of every family finds, in the
/// same order, whichever matchers narrow it.
@Suite struct AlertSnapshotIndexTests {
    static let snapshot: MetricSnapshot = {
        var depth = FamilyBuilder(MetricDescriptor("depth", .gauge, help: "h"))
        var jobs = FamilyBuilder(MetricDescriptor("jobs", .counter, help: "h"))
        var latency = FamilyBuilder(MetricDescriptor("latency", .histogram, help: "h"), buckets: [1])
        for svc in 1...12 {
            for queue in ["a", "b", ""] {
                let labels: Labels = queue.isEmpty ? ["svc": "s\(svc)"] : ["svc": "s\(svc)", "queue": queue]
                depth.set(Double(svc), labels)
                jobs.add(Double(svc * 2), labels)
                latency.observe(Double(svc), labels)
            }
        }
        return MetricSnapshot(families: [depth.build(), jobs.build(), latency.build()])
    }()

    /// The reference: every series of every family the sample name reads, filtered one by one.
    static func scanned(_ rule: AlertRule) throws -> [String] {
        var found: [String] = []
        for family in snapshot.families {
            let number: (SeriesValue) -> Double? = { if case .number(let value) = $0 { value } else { nil } }
            let reads: [String: (SeriesValue) -> Double?] = switch family.descriptor.type {
            case .counter: [family.name: number, family.name + "_total": number]
            case .gauge: [family.name: number]
            case .info: [family.name + "_info": number]
            case .histogram:
                [family.name + "_count": { if case .histogram(let h) = $0 { Double(h.count) } else { nil } },
                 family.name + "_sum": { if case .histogram(let h) = $0 { h.sum } else { nil } }]
            }
            guard let read = reads[rule.metric] else { continue }
            for series in family.series where try rule.matchers.allSatisfy({ try $0.matches(series.labels) }) {
                if let value = read(series.value) { found.append("\(series.labels) \(value)") }
            }
        }
        return found
    }

    /// An index built without earlier posting lists.
    static func freshIndex(_ snapshot: MetricSnapshot, _ labels: [String: Set<String>]) -> SnapshotIndex {
        var kept = KeptPostings()
        return SnapshotIndex(snapshot, indexing: labels, kept: &kept)
    }

    static func rule(_ metric: String, _ matchers: String) throws -> AlertRule {
        AlertRule(name: "r", environment: "prod", metric: metric, matchers: try LabelMatcher.parseList(matchers).get(),
                  comparison: .greater, threshold: 0, clearThreshold: nil, forDuration: .zero, keepFiring: .zero,
                  severity: "warning", channel: nil, description: nil)
    }

    @Test(arguments: [
        ("depth", ""), ("depth", #"svc="s3""#), ("depth", #"svc="s3",queue="b""#), ("depth", #"queue="""#),
        ("depth", #"queue!="a""#), ("depth", #"svc=~"s1.?""#), ("depth", #"svc=~"s1.?",queue=~"a|""#),
        ("depth", #"queue=~"a|""#), ("depth", #"queue!~"a""#), ("depth", #"svc="nope""#), ("depth", #"other="x""#),
        ("depth", #"other=~"x|y""#), ("jobs", #"svc="s2""#), ("jobs_total", #"svc=~"s(2|12)",queue="a""#),
        ("latency_count", #"svc="s5""#), ("latency_sum", #"queue=~"b""#), ("latency", #"svc="s5""#), ("missing", ""),
    ])
    func indexFindsWhatAScanFinds(metric: String, matchers: String) throws {
        let rule = try Self.rule(metric, matchers)
        let index = Self.freshIndex(Self.snapshot, SnapshotIndex.indexedLabels([rule]))
        let found = try rule.series(in: index).map { "\($0.labels) \($0.value)" }
        #expect(found == (try Self.scanned(rule)))
    }

    @Test func postingListsCoverOnlyTheLabelsRulesMatchWithEqualityOrRegex() throws {
        let rules = [try Self.rule("depth", #"svc="s1",queue!="a""#), try Self.rule("jobs_total", #"queue=~"a""#)]
        let labels = SnapshotIndex.indexedLabels(rules)
        #expect(labels == ["depth": ["svc"], "jobs_total": ["queue"]])
        let index = Self.freshIndex(Self.snapshot, labels)
        #expect(index.sources(of: "depth").first?.postings.keys.sorted() == ["svc"])
        #expect(index.sources(of: "depth").first?.postings["svc"]?[ExactString("s1")]?.count == 3)
        #expect(index.sources(of: "jobs").first?.postings["queue"]?[ExactString("a")]?.count == 12, "one family, both sample names")
        #expect(index.sources(of: "latency_count").first?.postings.isEmpty == true)
    }

    /// Posting lists kept from the previous evaluation find what fresh ones find, whether the
    /// family is the same, changed only in its values, or changed in its series (which moves
    /// every index after the change), and whatever labels the rules ask for.
    @Test func keptPostingListsFindWhatFreshOnesFind() throws {
        func depth(_ services: [Int], value: Double) -> MetricSnapshot {
            var depth = FamilyBuilder(MetricDescriptor("depth", .gauge, help: "h"))
            for svc in services { depth.set(value + Double(svc), ["svc": "s\(svc)", "queue": svc.isMultiple(of: 2) ? "a" : "b"]) }
            return MetricSnapshot(families: [depth.build()])
        }
        let same = depth(Array(1...9), value: 0)
        let steps: [(MetricSnapshot, String)] = [
            (same, #"svc="s5""#), (same, #"svc="s5""#), (depth(Array(1...9), value: 100), #"svc="s5""#),
            (depth([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], value: 200), #"svc="s5""#),
            (depth([2, 5, 9], value: 300), #"svc="s5""#), (depth([2, 5, 9], value: 300), #"queue="a""#),
            (depth([2, 5, 9], value: 300), #"svc=~"s[59]",queue="b""#), (MetricSnapshot(families: []), #"svc="s5""#),
            (depth([4, 5], value: 400), #"svc="s5""#),
        ]
        var kept = KeptPostings()
        for (snapshot, matchers) in steps {
            let rule = try Self.rule("depth", matchers)
            let labels = SnapshotIndex.indexedLabels([rule])
            let found = try rule.series(in: SnapshotIndex(snapshot, indexing: labels, kept: &kept)).map { "\($0.labels) \($0.value)" }
            let fresh = try rule.series(in: Self.freshIndex(snapshot, labels)).map { "\($0.labels) \($0.value)" }
            #expect(found == fresh, "\(matchers)")
        }
    }

    /// Label values are told apart by their bytes, as Prometheus does: an `é` in NFC and in
    /// NFD are two series, which `=` and `!=` tell apart and which fire as two alerts.
    @Test func normalisationVariantsAreTwoSeriesAndTwoAlerts() throws {
        var depth = FamilyBuilder(MetricDescriptor("depth", .gauge, help: "h"))
        depth.set(1, ["city": "caf\u{E9}"])
        depth.set(2, ["city": "cafe\u{301}"])
        let snapshot = MetricSnapshot(families: [depth.build()])
        let equal = try Self.rule("depth", "city=\"caf\u{E9}\""), other = try Self.rule("depth", "city!=\"caf\u{E9}\"")
        let index = Self.freshIndex(snapshot, SnapshotIndex.indexedLabels([equal, other]))
        #expect(try equal.series(in: index).map(\.value) == [1])
        #expect(try other.series(in: index).map(\.value) == [2])
        var evaluator = Evaluator()
        let events = evaluator.evaluate(RuleCatalog(rules: ["r": try Self.rule("depth", "")]), snapshot, now: 0, link: nil)
        #expect(events.filter { $0.status == .firing }.count == 2)
        #expect(evaluator.states["r"]?.count == 2)
        #expect(Set(events.map(\.identity)).count == 2)
    }

    @Test func seriesKeyOfALabelSetIsTheKeyOfItsClippedLabels() {
        let long = String(repeating: "x", count: AlertEvent.maxLabelValueLength + 10)
        for labels: Labels in [[:], ["b": "2", "a": "1"], ["q": #"say "hi"\n"#, "nl": "a\nb", "z": long, "e": ""]] {
            #expect(AlertEvent.seriesKey(of: labels) == AlertEvent.seriesKey(AlertEvent.clippedLabels(labels)))
        }
    }
}
