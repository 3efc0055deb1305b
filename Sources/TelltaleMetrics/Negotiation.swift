/// HTTP content negotiation for `/metrics`, following what Prometheus' own client library does:
/// OpenMetrics when the client's preferred acceptable type is OpenMetrics 1.0.0 (or unversioned),
/// the 0.0.4 text format otherwise.
public enum ContentNegotiation {
    public static func format(accept: String?) -> ExpositionFormat {
        guard let accept else { return .text }
        let ranked = mediaRanges(accept).filter { $0.quality > 0 }
            .enumerated().sorted { ($0.element.quality, -$0.offset) > ($1.element.quality, -$1.offset) }
        for (_, range) in ranked {
            switch range.type {
            case "application/openmetrics-text" where ["", "1.0.0", "0.0.1"].contains(range.version):
                return .openMetrics
            case "text/plain" where ["", "0.0.4"].contains(range.version):
                return .text
            case "*/*", "text/*":
                return .text
            default:
                continue
            }
        }
        return .text
    }

    /// Whether `Accept-Encoding` allows gzip (`gzip` or `*` with a non-zero quality).
    public static func acceptsGzip(_ acceptEncoding: String?) -> Bool {
        guard let acceptEncoding else { return false }
        let ranges = mediaRanges(acceptEncoding)
        if let gzip = ranges.first(where: { $0.type == "gzip" || $0.type == "x-gzip" }) { return gzip.quality > 0 }
        return ranges.first { $0.type == "*" }.map { $0.quality > 0 } ?? false
    }

    struct MediaRange {
        var type: String
        var version = ""
        var quality = 1.0
    }

    /// Only this much of a header is read, and at most `maxRanges` of its elements: a client
    /// may send 80 KB of `Accept`, and parsing all of it would cost the event loop
    /// milliseconds per request. Real clients send a few hundred bytes.
    static let maxHeaderBytes = 2048
    static let maxRanges = 32

    static func mediaRanges(_ header: String) -> [MediaRange] {
        let bounded = header.utf8.count > maxHeaderBytes ? String(decoding: header.utf8.prefix(maxHeaderBytes), as: UTF8.self) : header
        return bounded.split(separator: ",", maxSplits: maxRanges, omittingEmptySubsequences: true).prefix(maxRanges).compactMap { element in
            let parts = element.split(separator: ";").map { $0.trimming(" \t").lowercased() }
            guard let type = parts.first, !type.isEmpty else { return nil }
            var range = MediaRange(type: type)
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimming(" \t") }
                guard pair.count == 2 else { continue }
                let value = pair[1].trimming("\"")
                switch pair[0] {
                case "q": range.quality = Double(value) ?? 0
                case "version": range.version = value
                default: break
                }
            }
            return range
        }
    }
}
