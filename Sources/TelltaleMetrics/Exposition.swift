/// The two exposition formats `/metrics` speaks.
public enum ExpositionFormat: String, Sendable, CaseIterable {
    /// Prometheus text format 0.0.4.
    case text
    /// OpenMetrics 1.0.0 text.
    case openMetrics = "openmetrics"

    public var contentType: String {
        switch self {
        case .text: "text/plain; version=0.0.4; charset=utf-8"
        case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
        }
    }

    /// What ends a complete exposition: OpenMetrics requires `# EOF`.
    public var trailer: String {
        switch self {
        case .text: ""
        case .openMetrics: "# EOF\n"
        }
    }
}

/// Renders families into exposition bytes. Pure and deterministic: the same families give the
/// same bytes, and any label value or HELP text (quotes, backslashes, newlines) is escaped.
public enum ExpositionEncoder {
    /// Encodes the families in the order given (callers sort them), without the trailer.
    public static func encode(_ families: [MetricFamily], format: ExpositionFormat) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(families.reduce(0) { $0 + 64 + $1.series.count * 64 })
        for family in families where !family.series.isEmpty {
            encode(family, format: format, into: &out)
        }
        return out
    }

    static func encode(_ family: MetricFamily, format: ExpositionFormat, into out: inout [UInt8]) {
        appendMetadata(family.descriptor, format: format, into: &out)
        appendSamples(family, into: &out)
    }

    /// The `# HELP` and `# TYPE` lines of a family (and OpenMetrics' `# UNIT`): all that differs
    /// between the formats. Empty for a family without series, which is not exposed.
    public static func metadata(_ family: MetricFamily, format: ExpositionFormat) -> [UInt8] {
        var out: [UInt8] = []
        if !family.series.isEmpty { appendMetadata(family.descriptor, format: format, into: &out) }
        return out
    }

    /// The sample lines of a family: the same bytes in both formats, so a cache keeps them once.
    public static func samples(_ family: MetricFamily) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(family.series.count * 64)
        appendSamples(family, into: &out)
        return out
    }

    private static func appendMetadata(_ descriptor: MetricDescriptor, format: ExpositionFormat, into out: inout [UInt8]) {
        let metadataName = metadataName(descriptor, format)
        out.append(contentsOf: "# HELP \(metadataName) ".utf8)
        appendEscaped(descriptor.help.utf8, quotes: format == .openMetrics, into: &out)
        out.append(UInt8(ascii: "\n"))
        out.append(contentsOf: "# TYPE \(metadataName) \(typeName(descriptor.type, format))\n".utf8)
        if format == .openMetrics, let unit = descriptor.unit {
            out.append(contentsOf: "# UNIT \(metadataName) \(unit)\n".utf8)
        }
    }

    private static func appendSamples(_ family: MetricFamily, into out: inout [UInt8]) {
        let descriptor = family.descriptor
        // Names made once per family, not per series: this runs for every series of a render.
        let name = Array(sampleName(descriptor).utf8)
        let histogramNames = HistogramNames(descriptor.name)
        var bounds = BoundTexts()
        for series in family.series {
            switch series.value {
            case .number(let value):
                out.append(contentsOf: name)
                appendLabels(series.labels, into: &out)
                if !series.labels.isEmpty { out.append(UInt8(ascii: "}")) }
                appendValue(value, into: &out)
            case .histogram(let histogram):
                appendHistogram(histogramNames, series.labels, histogram, bounds: &bounds, into: &out)
            }
        }
    }

    /// A histogram's sample names, as bytes.
    private struct HistogramNames {
        let bucket: [UInt8], count: [UInt8], sum: [UInt8]

        init(_ name: String) {
            (bucket, count, sum) = (Array((name + "_bucket").utf8), Array((name + "_count").utf8), Array((name + "_sum").utf8))
        }
    }

    /// The `le` labels of the last bucket layout seen: the series of a family nearly always share one.
    private struct BoundTexts {
        var bounds: [Double] = []
        var texts: [[UInt8]] = []

        mutating func texts(for upperBounds: [Double]) -> [[UInt8]] {
            // Bit patterns, not ==: -0.0 == 0.0, but they are written differently.
            if !upperBounds.elementsEqual(bounds, by: { $0.bitPattern == $1.bitPattern }) {
                bounds = upperBounds
                texts = upperBounds.map { Array(",le=\"\(formatNumber($0, integral: false))\"}".utf8) }
            }
            return texts
        }
    }

    /// Each series' labels are escaped once and copied to its bucket, count and sum lines.
    private static func appendHistogram(_ names: HistogramNames, _ labels: Labels, _ histogram: HistogramValue,
                                        bounds: inout BoundTexts, into out: inout [UInt8]) {
        var prefix: [UInt8] = []  // `{name="value",…` without its closing brace
        appendLabels(labels, into: &prefix)
        func bucket(_ le: [UInt8], _ count: UInt64) {
            out.append(contentsOf: names.bucket)
            if prefix.isEmpty {
                out.append(UInt8(ascii: "{"))
                out.append(contentsOf: le.dropFirst())  // no comma before `le`
            } else {
                out.append(contentsOf: prefix)
                out.append(contentsOf: le)
            }
            appendCount(count, into: &out)
        }
        func line(_ name: [UInt8]) {
            out.append(contentsOf: name)
            out.append(contentsOf: prefix)
            if !prefix.isEmpty { out.append(UInt8(ascii: "}")) }
        }
        let cumulative = histogram.cumulativeCounts
        for (index, le) in bounds.texts(for: histogram.upperBounds).enumerated() { bucket(le, cumulative[index]) }
        let count = cumulative.last ?? 0
        bucket(Array(",le=\"+Inf\"}".utf8), count)
        line(names.count)
        appendCount(count, into: &out)
        line(names.sum)
        appendValue(histogram.sum, into: &out)
    }

    /// `{name="value",…` without the closing brace; nothing for an empty set.
    private static func appendLabels(_ labels: Labels, into out: inout [UInt8]) {
        var first = true
        labels.forEachBytes { name, value in
            out.append(UInt8(ascii: first ? "{" : ","))
            first = false
            out.append(contentsOf: name)
            out.append(contentsOf: "=\"".utf8)
            appendEscaped(value, quotes: true, into: &out)
            out.append(UInt8(ascii: "\""))
        }
    }

    /// ` value` and the line's end, as `formatNumber` writes it.
    private static func appendValue(_ value: Double, into out: inout [UInt8]) {
        out.append(UInt8(ascii: " "))
        if writesAsInteger(value) {
            if value < 0 { out.append(UInt8(ascii: "-")) }
            appendDigits(UInt64(abs(value)), into: &out)  // exact: |value| < 10^15
        } else {
            out.append(contentsOf: formatNumber(value).utf8)
        }
        out.append(UInt8(ascii: "\n"))
    }

    /// ` count` and the line's end.
    private static func appendCount(_ count: UInt64, into out: inout [UInt8]) {
        out.append(UInt8(ascii: " "))
        appendDigits(count, into: &out)
        out.append(UInt8(ascii: "\n"))
    }

    /// Decimal digits, without the String that `description` would allocate.
    private static func appendDigits(_ value: UInt64, into out: inout [UInt8]) {
        let start = out.count
        var rest = value
        repeat {
            out.append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
        } while rest > 0
        out[start...].reverse()
    }

    /// Escapes `\` and line feeds, and `"` where the format asks for it. Most text needs none:
    /// it is then copied whole.
    private static func appendEscaped<Bytes: Collection<UInt8>>(_ text: Bytes, quotes: Bool, into out: inout [UInt8]) {
        let needsEscaping = text.contains { byte in
            byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "\n") || (quotes && byte == UInt8(ascii: "\""))
        }
        guard needsEscaping else {
            out.append(contentsOf: text)
            return
        }
        for byte in text {
            switch byte {
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\""): out.append(contentsOf: quotes ? [UInt8(ascii: "\\"), UInt8(ascii: "\"")] : [byte])
            default: out.append(byte)
            }
        }
    }

    private static func metadataName(_ descriptor: MetricDescriptor, _ format: ExpositionFormat) -> String {
        format == .openMetrics ? descriptor.name : sampleName(descriptor)
    }

    private static func sampleName(_ descriptor: MetricDescriptor) -> String {
        switch descriptor.type {
        case .counter: descriptor.name + "_total"
        case .info: descriptor.name + "_info"
        case .gauge, .histogram: descriptor.name
        }
    }

    private static func typeName(_ type: MetricType, _ format: ExpositionFormat) -> String {
        switch (type, format) {
        case (.info, .text): "gauge"
        default: type.rawValue
        }
    }

    /// Formats a sample value or bucket bound: `+Inf`, `-Inf`, `NaN`, integral values without a
    /// fraction (for values), otherwise the shortest representation that round-trips.
    public static func formatNumber(_ value: Double, integral: Bool = true) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if integral, writesAsInteger(value) { return String(Int64(value)) }
        return value.description
    }

    /// Whether a sample value is written as an integer: whole and small enough that every
    /// digit is exact (a Double holds every integer below 2^53, about 9 × 10^15).
    private static func writesAsInteger(_ value: Double) -> Bool {
        value == value.rounded() && abs(value) < 1e15
    }
}
