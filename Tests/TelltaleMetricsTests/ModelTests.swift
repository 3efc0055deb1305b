import Testing
import TelltaleMetrics

@Suite struct ModelTests {
    @Test func metricAndLabelNames() {
        #expect(MetricNames.isValidMetricName("a_b:c1"))
        #expect(!MetricNames.isValidMetricName("1abc"))
        #expect(!MetricNames.isValidMetricName(""))
        #expect(!MetricNames.isValidMetricName("a-b"))
        #expect(!MetricNames.isValidMetricName("äb"))
        #expect(MetricNames.isValidLabelName("_x9"))
        #expect(!MetricNames.isValidLabelName("a:b"))
        #expect(!MetricNames.isValidLabelName("__reserved"))
    }

    @Test func descriptorProblems() {
        #expect(MetricDescriptor("ok_seconds", .gauge, help: "", unit: "seconds").problem == nil)
        #expect(MetricDescriptor("latency", .gauge, help: "", unit: "seconds").problem != nil)
        #expect(MetricDescriptor("jobs_total", .counter, help: "").problem != nil)
        #expect(MetricDescriptor("x_bucket", .histogram, help: "").problem != nil)
        #expect(MetricDescriptor("bad-name", .gauge, help: "").problem != nil)
    }

    @Test func labelsAreSortedAndLastValueWins() {
        let labels = Labels([("z", "1"), ("a", "2"), ("z", "3")])
        #expect(labels.labels == [Label("a", "2"), Label("z", "3")])
        #expect(labels == ["a": "2", "z": "3"])
    }

    /// Sets are packed into one buffer with LEB128 lengths: long values (two and three length
    /// bytes), NUL, quotes and canonically equivalent spellings all read back as they went in,
    /// and order and equality stay those of the labels' bytes.
    @Test func packedSetsReadBackAndOrderByBytes() {
        let long = String(repeating: "v", count: 200), longer = String(repeating: "w", count: 20_000)
        let nfc = "caf\u{E9}", nfd = "cafe\u{301}"
        let pairs = [("z", longer), ("a", "x\0y\"\n"), ("m", long), ("e", nfc)]
        let labels = Labels(pairs)
        #expect(labels.labels.map(\.name) == ["a", "e", "m", "z"])
        for (name, value) in pairs { #expect(labels[name].map { Array($0.utf8) } == Array(value.utf8)) }
        #expect(labels["b"] == nil)
        #expect(Labels([("e", nfc)]) != Labels([("e", nfd)]))
        #expect(Set([Labels([("e", nfc)]), Labels([("e", nfd)])]).count == 2)
        #expect(Labels([("a", "1")]) < Labels([("a", "1"), ("b", "0")]))
        #expect(!(Labels([("a", "1"), ("b", "0")]) < Labels([("a", "1")])))
        #expect(Labels([("a", "10")]) < Labels([("a", "9")]))
        #expect(Labels([("a", long)]) < Labels([("a", long + "a")]))
        #expect(Labels([("a", "b")]) < Labels([("b", "a")]))
        #expect(!(labels < labels))
        #expect(labels.adding("b", "1")["b"] == "1" && labels.adding("a", "new")["a"] == "new")
        #expect(labels.adding("b", "1").labels.count == 5)
        #expect(Labels([("a", "1")]).merging(Labels([("a", "2"), ("c", "3")])) == Labels([("a", "2"), ("c", "3")]))
    }

    @Test func countersNeverGoDown() {
        var counter = FamilyBuilder(MetricDescriptor("c", .counter, help: ""))
        counter.add(2)
        counter.add(-5)
        counter.add(.nan)
        counter.add(1)
        #expect(counter.build().series == [Series(labels: .none, value: .number(3))])
    }

    /// Whatever order series come in, and on either side of the size up to which a builder
    /// keeps them in label order, the family holds each label set once, sorted, with its last
    /// value; after `retain`, too.
    @Test(arguments: [0, 1, 7, 256, 257, 700])
    func builtFamiliesAreSortedWhateverTheOrderOfArrival(count: Int) {
        var generator = SystemRandomNumberGenerator()
        let ids = (0..<count).shuffled(using: &generator)
        var builder = FamilyBuilder(MetricDescriptor("m", .gauge, help: "h"))
        for id in ids { builder.set(-1, ["id": "\(id)"]) }
        for id in ids.shuffled(using: &generator) { builder.set(Double(id), ["id": "\(id)"]) }
        func check(_ family: MetricFamily, _ expected: [Int]) {
            #expect(family.series.map(\.labels) == expected.map { ["id": "\($0)"] as Labels }.sorted())
            #expect(family.series.allSatisfy { $0.value == .number(Double($0.labels["id"]!)!) })
        }
        check(builder.build(), ids)
        builder.retain { Int($0["id"]!)! % 3 != 0 }
        check(builder.build(), ids.filter { $0 % 3 != 0 })
        builder.set(-2, ["id": "x"])
        builder.set(Double(count), ["id": "\(count)"])
        builder.set(count == 0 ? 0 : -3, ["id": "x"])
        #expect(builder.build().series.map(\.labels).sorted() == builder.build().series.map(\.labels))
        #expect(builder.seriesCount == ids.filter { $0 % 3 != 0 }.count + 2)
    }

    @Test func histogramBucketsAreCumulativeWithInfEqualToCount() {
        var histogram = HistogramValue(upperBounds: [1, 2, 5])
        for value in [0.5, 1, 1.5, 2, 4, 9, .nan] { histogram.observe(value) }
        #expect(histogram.cumulativeCounts == [2, 4, 5, 6])
        #expect(histogram.count == 6)
        #expect(histogram.sum == 18)
    }

    /// Series are kept by the ten thousand: a number with its labels stays three words, the
    /// rare histogram is boxed.
    @Test func aSeriesIsSmallAndAHistogramRoundTripsThroughItsBox() {
        #expect(MemoryLayout<Series>.stride <= 24)
        var histogram = HistogramValue(upperBounds: [1, 2])
        histogram.observe(1.5)
        let series = Series(labels: ["a": "b"], value: .histogram(histogram))
        #expect(series.value == .histogram(histogram))
        #expect(series.value != .number(1))
    }

    @Test func bucketValidation() {
        #expect(Buckets.problem([0.1, 1, 10]) == nil)
        #expect(Buckets.problem([]) != nil)
        #expect(Buckets.problem([1, 1]) != nil)
        #expect(Buckets.problem([2, 1]) != nil)
        #expect(Buckets.problem([1, .infinity]) != nil)
    }

    @Test func mergeKeepsFirstDefinitionAndReportsConflicts() {
        let gauge = MetricDescriptor("shared", .gauge, help: "g")
        let counter = MetricDescriptor("shared", .counter, help: "c")
        let a = MetricFamily(gauge, series: [Series(labels: ["s": "a"], value: .number(1))])
        let b = MetricFamily(gauge, series: [Series(labels: ["s": "b"], value: .number(2)),
                                             Series(labels: ["s": "a"], value: .number(9))])
        let c = MetricFamily(counter, series: [Series(labels: ["s": "c"], value: .number(3))])
        let (families, conflicts) = FamilyMerger.merge([("one", [a]), ("two", [b]), ("three", [c])])
        #expect(families.count == 1)
        #expect(families[0].series.map(\.labels) == [["s": "a"], ["s": "b"]])
        #expect(families[0].series[0].value == .number(1))
        #expect(conflicts == [FamilyMerger.Conflict(family: "shared", source: "three")])
    }

    @Test func numberFormatting() {
        #expect(ExpositionEncoder.formatNumber(3) == "3")
        #expect(ExpositionEncoder.formatNumber(0.25) == "0.25")
        #expect(ExpositionEncoder.formatNumber(-0.0) == "0")
        #expect(ExpositionEncoder.formatNumber(.nan) == "NaN")
        #expect(ExpositionEncoder.formatNumber(-.infinity) == "-Inf")
        #expect(ExpositionEncoder.formatNumber(1, integral: false) == "1.0")
        #expect(ExpositionEncoder.formatNumber(1e16) == "1e+16")
    }
}

@Suite struct NegotiationTests {
    @Test func prometheusDefaultAcceptPrefersOpenMetrics() {
        let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
            + "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        #expect(ContentNegotiation.format(accept: accept) == .openMetrics)
    }

    @Test func textWhenNotAskedForOrPreferred() {
        #expect(ContentNegotiation.format(accept: nil) == .text)
        #expect(ContentNegotiation.format(accept: "*/*") == .text)
        #expect(ContentNegotiation.format(accept: "text/plain") == .text)
        #expect(ContentNegotiation.format(accept: "application/json") == .text)
        #expect(ContentNegotiation.format(accept: "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5") == .text)
        #expect(ContentNegotiation.format(accept: "application/openmetrics-text;version=2.0.0") == .text)
        #expect(ContentNegotiation.format(accept: "application/openmetrics-text; q=0") == .text)
    }

    @Test func openMetricsWhenPreferred() {
        #expect(ContentNegotiation.format(accept: "application/openmetrics-text") == .openMetrics)
        #expect(ContentNegotiation.format(accept: "text/plain;q=0.1, application/openmetrics-text; version=\"1.0.0\"") == .openMetrics)
    }

    @Test func gzipAcceptance() {
        #expect(ContentNegotiation.acceptsGzip("gzip, deflate"))
        #expect(ContentNegotiation.acceptsGzip("br;q=1.0, gzip;q=0.8"))
        #expect(ContentNegotiation.acceptsGzip("*"))
        #expect(!ContentNegotiation.acceptsGzip("gzip;q=0"))
        #expect(!ContentNegotiation.acceptsGzip("identity"))
        #expect(!ContentNegotiation.acceptsGzip(nil))
    }
}

@Suite struct PositionalLabelsTests {
    private func storage(_ labels: Labels) -> UnsafeRawPointer? {
        labels.packedBytes.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
    }

    /// The set for `pairs`, kept as the next position's.
    private func kept(_ pairs: [(String, String)], _ reuse: inout PositionalLabels) -> Labels {
        let labels = reuse.labels(pairs)
        reuse.keep(labels)
        return labels
    }

    @Test func aRunWithTheSameRowsReusesTheLastRunsSets() {
        var reuse = PositionalLabels()
        let first = [kept([("target", "db"), ("id", "1")], &reuse), kept([("target", "db"), ("id", "2")], &reuse)]
        reuse.endRun()
        let second = [kept([("target", "db"), ("id", "1")], &reuse), kept([("target", "db"), ("id", "3")], &reuse)]
        #expect(second == [["target": "db", "id": "1"], ["target": "db", "id": "3"]])
        #expect(storage(second[0]) == storage(first[0]))
        #expect(storage(second[1]) != storage(first[1]))
    }

    @Test func onlyKeptSetsTakeAPosition() {
        var reuse = PositionalLabels()
        _ = reuse.labels([("id", "dropped")])  // a row past max_series, say: not kept
        let first = kept([("id", "1")], &reuse)
        reuse.endRun()
        #expect(storage(reuse.labels([("id", "1")])) == storage(first))
    }

    @Test func reuseGivesWhatBuildingGives() {
        let cases: [(built: [(String, String)], asked: [(String, String)])] = [
            ([("a", "1"), ("b", "2")], [("b", "2"), ("a", "1")]),  // order of pairs does not matter
            ([("a", "1"), ("b", "2")], [("a", "1"), ("a", "1")]),  // a repeated name is not another label
            ([("a", "1")], [("a", "0"), ("a", "1")]),  // the last of repeated names wins
            ([("a", "1")], [("a", "1"), ("a", "0")]),
            ([("a", "1")], [("a", "1"), ("b", "")]),
            ([("a", "\u{E9}")], [("a", "e\u{301}")]),  // é in NFC, then NFD: other bytes, another set
            ([], []),
        ]
        for (built, asked) in cases {
            var reuse = PositionalLabels()
            _ = kept(built, &reuse)
            reuse.endRun()
            let labels = reuse.labels(asked)
            #expect(labels == Labels(asked), "built from \(built), asked \(asked)")
            #expect(labels.labels.map { Array($0.value.utf8) } == Labels(asked).labels.map { Array($0.value.utf8) })
        }
    }
}

@Suite struct LabelBytesTests {
    @Test func canonicallyEquivalentValuesAreDifferentLabels() {
        let composed: Labels = ["a": "\u{E9}"], decomposed: Labels = ["a": "e\u{301}"]
        #expect("\u{E9}" == "e\u{301}")  // what Swift's String == says, and Prometheus does not
        #expect(composed != decomposed)
        #expect(Set([composed, decomposed]).count == 2)
        #expect((composed < decomposed) != (decomposed < composed))
    }

    @Test func exactStringsAreKeysByBytes() {
        let composed = ExactString("caf\u{E9}"), decomposed = ExactString("cafe\u{301}")
        #expect(composed != decomposed)
        #expect(Set([composed, decomposed, ExactString("caf\u{E9}")]).count == 2)
        #expect(decomposed < composed)  // "e" (0x65) before "é" (0xC3 0xA9)
        #expect(ExactString("x") == ExactString("x") && !(ExactString("x") < ExactString("x")))
    }

    @Test func byteOrderIsCodePointOrder() {
        #expect("a".comparingBytes("b") < 0)
        #expect("Z".comparingBytes("a") < 0)
        #expect("\u{E9}".comparingBytes("\u{10000}") < 0)
        #expect("x".comparingBytes("x") == 0)
        #expect("".comparingBytes("x") < 0)
        #expect("b".comparingBytes("a") > 0)
    }
}
