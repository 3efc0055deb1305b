/// Merges the families of several sources into one sorted list.
///
/// Two sources may contribute series to the same family (for example
/// `telltale_series_dropped_total`); when their descriptors disagree, the first wins and the
/// other is reported instead of crashing or emitting an invalid exposition. A repeated label
/// set keeps the first series.
public enum FamilyMerger {
    public struct Conflict: Hashable, Sendable {
        public let family: String
        public let source: String

        public init(family: String, source: String) {
            self.family = family
            self.source = source
        }
    }

    public static func merge(_ sources: [(source: String, families: [MetricFamily])]) -> (families: [MetricFamily], conflicts: [Conflict]) {
        var descriptors: [String: MetricDescriptor] = [:]
        var series: [String: [Labels: Series]] = [:]
        var conflicts: [Conflict] = []
        for (source, families) in sources {
            for family in families {
                if let known = descriptors[family.name], known != family.descriptor {
                    conflicts.append(Conflict(family: family.name, source: source))
                    continue
                }
                descriptors[family.name] = family.descriptor
                var byLabels = series[family.name, default: [:]]
                for item in family.series where byLabels[item.labels] == nil {
                    byLabels[item.labels] = item
                }
                series[family.name] = byLabels
            }
        }
        let merged = descriptors.sorted { $0.key < $1.key }.map { name, descriptor in
            MetricFamily(descriptor, series: Array(series[name, default: [:]].values))
        }
        return (merged, conflicts)
    }
}
