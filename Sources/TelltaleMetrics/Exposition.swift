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
        appendEscaped(descriptor.help, quotes: format == .openMetrics, into: &out)
        out.append(UInt8(ascii: "\n"))
        out.append(contentsOf: "# TYPE \(metadataName) \(typeName(descriptor.type, format))\n".utf8)
        if format == .openMetrics, let unit = descriptor.unit {
            out.append(contentsOf: "# UNIT \(metadataName) \(unit)\n".utf8)
        }
    }

    private static func appendSamples(_ family: MetricFamily, into out: inout [UInt8]) {
        let descriptor = family.descriptor
        // Names made once per family, not per series: this runs for every series of a render.
        let name = sampleName(descriptor)
        let histogramNames = (bucket: descriptor.name + "_bucket", count: descriptor.name + "_count",
                              sum: descriptor.name + "_sum")
        for series in family.series {
            switch series.value {
            case .number(let value):
                appendSample(name, series.labels, extra: nil, value: formatNumber(value), into: &out)
            case .histogram(let histogram):
                appendHistogram(histogramNames, series.labels, histogram, into: &out)
            }
        }
    }

    private static func appendHistogram(_ names: (bucket: String, count: String, sum: String), _ labels: Labels,
                                        _ histogram: HistogramValue, into out: inout [UInt8]) {
        let cumulative = histogram.cumulativeCounts
        for (index, bound) in histogram.upperBounds.enumerated() {
            appendSample(names.bucket, labels, extra: Label("le", formatNumber(bound, integral: false)),
                         value: String(cumulative[index]), into: &out)
        }
        let count = String(cumulative.last ?? 0)
        appendSample(names.bucket, labels, extra: Label("le", "+Inf"), value: count, into: &out)
        appendSample(names.count, labels, extra: nil, value: count, into: &out)
        appendSample(names.sum, labels, extra: nil, value: formatNumber(histogram.sum), into: &out)
    }

    private static func appendSample(_ name: String, _ labels: Labels, extra: Label?, value: String, into out: inout [UInt8]) {
        out.append(contentsOf: name.utf8)
        if !labels.isEmpty || extra != nil {
            out.append(UInt8(ascii: "{"))
            var first = true
            for label in labels.labels {
                appendLabel(label, first: first, into: &out)
                first = false
            }
            if let extra { appendLabel(extra, first: first, into: &out) }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: value.utf8)
        out.append(UInt8(ascii: "\n"))
    }

    private static func appendLabel(_ label: Label, first: Bool, into out: inout [UInt8]) {
        if !first { out.append(UInt8(ascii: ",")) }
        out.append(contentsOf: label.name.utf8)
        out.append(contentsOf: "=\"".utf8)
        appendEscaped(label.value, quotes: true, into: &out)
        out.append(UInt8(ascii: "\""))
    }

    /// Escapes `\` and line feeds, and `"` where the format asks for it.
    private static func appendEscaped(_ text: String, quotes: Bool, into out: inout [UInt8]) {
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\"") where quotes: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
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
        if integral, value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return value.description
    }
}
