import Foundation
import Testing
import TelltaleMetrics

/// Families that exercise every escaping and number-formatting rule of both formats.
func nastyFamilies() -> [MetricFamily] {
    var requests = FamilyBuilder(MetricDescriptor("app_requests", .counter, help: "Requests with a \\ backslash,\na newline and \"quotes\"."))
    requests.add(3, ["path": "/quote\"d", "method": "GET"])
    requests.add(1, ["path": "back\\slash", "method": "GET"])
    requests.add(2, ["path": "new\nline", "method": "POST"])
    requests.add(4, ["path": "emoji 🚀 ünïcødé", "method": "GET"])
    requests.add(5, ["path": "", "method": "GET"])

    var temperature = FamilyBuilder(MetricDescriptor("app_temperature_celsius", .gauge, help: "Odd values.", unit: "celsius"))
    temperature.set(.nan, ["sensor": "nan"])
    temperature.set(.infinity, ["sensor": "plus_inf"])
    temperature.set(-.infinity, ["sensor": "minus_inf"])
    temperature.set(-0.5, ["sensor": "negative"])
    temperature.set(1e-9, ["sensor": "tiny"])
    temperature.set(1.5e20, ["sensor": "huge"])
    temperature.set(42, ["sensor": "integral"])
    temperature.set(-17, ["sensor": "negative_integral"])
    temperature.set(999_999_999_999_999, ["sensor": "largest_integral"])
    temperature.set(1e15, ["sensor": "past_integral"])
    temperature.set(-0.0, ["sensor": "negative_zero"])

    var latency = FamilyBuilder(MetricDescriptor("app_latency_seconds", .histogram, help: "Latency.", unit: "seconds"),
                                buckets: [0.005, 0.1, 1, 2.5])
    for value in [0.001, 0.005, 0.05, 0.5, 3, 100] { latency.observe(value, ["route": "a"]) }
    latency.touchHistogram(["route": "empty"])
    latency.observe(0.2, ["route": "esc\"aped\\\n"])

    // No labels (the `le` label alone), and two bucket layouts in one family.
    var sizes = FamilyBuilder(MetricDescriptor("app_size_bytes", .histogram, help: "Sizes."), buckets: [100, 1e6])
    for value in [1.0, 150, 2e9] { sizes.observe(value) }
    var layouts = FamilyBuilder(MetricDescriptor("app_layouts", .histogram, help: "Layouts."), buckets: [1, 2])
    layouts.observe(1.5, ["layout": "a"])
    let layoutsFamily = layouts.build()
    var otherLayout = FamilyBuilder(MetricDescriptor("app_layouts", .histogram, help: "Layouts."), buckets: [0.25])
    otherLayout.observe(-7, ["layout": "b"])
    let mixedLayouts = MetricFamily(layoutsFamily.descriptor, series: layoutsFamily.series + otherLayout.build().series)

    var build = FamilyBuilder(MetricDescriptor("app_build", .info, help: "Build."))
    build.set(1, ["version": "1.2.3", "commit": "abc"])

    var unlabelled = FamilyBuilder(MetricDescriptor("app_up", .gauge, help: ""))
    unlabelled.set(1)

    let empty = FamilyBuilder(MetricDescriptor("app_never_seen", .gauge, help: "No series: not exposed."))

    return ([requests, temperature, latency, sizes, build, unlabelled, empty].map { $0.build() } + [mixedLayouts])
        .sorted { $0.name < $1.name }
}

@Suite struct EncoderGoldenTests {
    @Test(arguments: ExpositionFormat.allCases)
    func matchesGoldenFile(format: ExpositionFormat) throws {
        let rendered = String(decoding: ExpositionEncoder.encode(nastyFamilies(), format: format) + Array(format.trailer.utf8),
                              as: UTF8.self)
        let name = format == .text ? "nasty.prom" : "nasty.om"
        // UPDATE_GOLDEN=1 rewrites the file in the source tree and compares against it; the
        // bundled copy is what a normal run reads.
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] != nil {
            let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/\(name)")
            try rendered.write(to: source, atomically: true, encoding: .utf8)
            #expect(try String(contentsOf: source, encoding: .utf8) == rendered)
            return
        }
        let url = try #require(Bundle.module.url(forResource: "Golden/\(name)", withExtension: nil))
        #expect(rendered == (try String(contentsOf: url, encoding: .utf8)))
    }

    @Test func outputIsDeterministicWhateverTheInsertionOrder() {
        var first = FamilyBuilder(MetricDescriptor("x", .gauge, help: "x"))
        var second = FamilyBuilder(MetricDescriptor("x", .gauge, help: "x"))
        let labelSets: [Labels] = (0..<50).map { ["b": "\($0 % 7)", "a": "\($0)"] }
        for labels in labelSets { first.set(1, labels) }
        for labels in labelSets.reversed() { second.set(1, labels) }
        #expect(ExpositionEncoder.encode([first.build()], format: .text)
            == ExpositionEncoder.encode([second.build()], format: .text))
    }

    @Test func bucketLayoutsThatOnlyDifferInTheSignOfZeroAreWrittenAsTheyAre() {
        let descriptor = MetricDescriptor("app_signs", .histogram, help: "Signs.")
        let family = MetricFamily(descriptor, series: [
            Series(labels: ["s": "a"], value: .histogram(HistogramValue(upperBounds: [0.0]))),
            Series(labels: ["s": "b"], value: .histogram(HistogramValue(upperBounds: [-0.0]))),
        ])
        let text = String(decoding: ExpositionEncoder.encode([family], format: .text), as: UTF8.self)
        #expect(text.contains("app_signs_bucket{s=\"a\",le=\"0.0\"} 0\n"))
        #expect(text.contains("app_signs_bucket{s=\"b\",le=\"-0.0\"} 0\n"))
    }
}
