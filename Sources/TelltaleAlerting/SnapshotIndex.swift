import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// The snapshot as rules look it up, built once per evaluation: the families by the sample
/// names rules use (`name`, `name_total`, `name_count`…), and per family, posting lists
/// (label → value → indexes of its series) for the labels rules match with `=` or `=~`.
/// A thousand rules then each read the few series they can match instead of every series.
struct SnapshotIndex {
    /// Label → value (by its bytes) → ascending series indexes.
    typealias Postings = [String: [ExactString: [Int]]]

    /// How a sample name reads a series' value.
    enum Reader {
        case number, histogramCount, histogramSum

        func read(_ value: SeriesValue) -> Double? {
            switch (self, value) {
            case (.number, .number(let number)): number
            case (.histogramCount, .histogram(let histogram)): Double(histogram.count)
            case (.histogramSum, .histogram(let histogram)): histogram.sum
            default: nil
            }
        }
    }

    /// One family a sample name reads.
    struct Source {
        let family: MetricFamily
        let reader: Reader
        /// For the labels the index was asked for.
        let postings: Postings
    }

    private let sources: [String: [Source]]

    /// `labels`: by sample name, the labels worth posting lists (those of `=` and `=~` matchers).
    /// `kept`: the previous evaluation's posting lists, reused where they still hold, and
    /// replaced by this snapshot's.
    init(_ snapshot: MetricSnapshot, indexing labels: [String: Set<String>], kept: inout KeptPostings) {
        var sources: [String: [Source]] = [:]
        var nowKept = KeptPostings()
        for family in snapshot.families {
            let readers = Self.readers(family)
            let wanted = readers.reduce(into: Set<String>()) { $0.formUnion(labels[$1.name] ?? []) }
            let postings = kept.postings(family, wanted, keptNow: &nowKept)
            for (name, reader) in readers {
                sources[name, default: []].append(Source(family: family, reader: reader, postings: postings))
            }
        }
        self.sources = sources
        kept = nowKept
    }

    /// The families a sample name reads, in the snapshot's order.
    func sources(of sampleName: String) -> [Source] { sources[sampleName] ?? [] }

    /// The labels worth posting lists for these rules.
    static func indexedLabels<Rules: Sequence<AlertRule>>(_ rules: Rules) -> [String: Set<String>] {
        var labels: [String: Set<String>] = [:]
        for rule in rules {
            for matcher in rule.matchers where matcher.operation == .equal || matcher.operation == .matches {
                labels[rule.metric, default: []].insert(matcher.name)
            }
        }
        return labels
    }

    fileprivate static func postings(_ family: MetricFamily, _ labels: Set<String>) -> Postings {
        var postings = Dictionary(uniqueKeysWithValues: labels.map { ($0, [ExactString: [Int]]()) })
        for (index, series) in family.series.enumerated() {
            for label in series.labels where labels.contains(label.name) {
                postings[label.name]![ExactString(label.value), default: []].append(index)
            }
        }
        return postings
    }

    private static func readers(_ family: MetricFamily) -> [(name: String, reader: Reader)] {
        switch family.descriptor.type {
        case .counter: [(family.name, .number), (family.name + "_total", .number)]
        case .histogram: [(family.name + "_count", .histogramCount), (family.name + "_sum", .histogramSum)]
        case .info: [(family.name + "_info", .number)]
        case .gauge: [(family.name, .number)]
        }
    }
}

/// Posting lists kept from one evaluation to the next. Between two evaluations most families
/// are unchanged, or changed in their values only (a SQL gauge read again every second):
/// their label sets are the same, in the same order, and so are their posting lists. Only
/// the families of the last snapshot are kept.
struct KeptPostings: Sendable {
    private struct Entry: Sendable {
        let labels: Set<String>
        let family: MetricFamily
        let postings: SnapshotIndex.Postings
    }

    /// By family name (unique in a snapshot).
    private var entries: [String: Entry] = [:]

    /// The family's posting lists for `labels`, reused when they still hold; recorded in `keptNow`.
    fileprivate func postings(_ family: MetricFamily, _ labels: Set<String>, keptNow: inout KeptPostings) -> SnapshotIndex.Postings {
        guard !labels.isEmpty else { return [:] }
        let postings = if let entry = entries[family.name], entry.labels == labels, Self.sameLabelSets(entry.family, family) {
            entry.postings
        } else {
            SnapshotIndex.postings(family, labels)
        }
        keptNow.entries[family.name] = Entry(labels: labels, family: family, postings: postings)
        return postings
    }

    /// Whether both families have the same label sets in the same order. Values are not
    /// compared: the lists do not depend on them. A label set shared with the previous run
    /// (an unchanged family, or rows reusing their sets) compares at once.
    private static func sameLabelSets(_ old: MetricFamily, _ new: MetricFamily) -> Bool {
        old.series.count == new.series.count && zip(old.series, new.series).allSatisfy { $0.labels == $1.labels }
    }
}

extension SnapshotIndex.Source {
    /// Indexes of the series that can match all `matchers` (each still to be checked), in
    /// order: the shortest posting list of an `=` matcher, else the series of the values a
    /// `=~` matcher accepts; nil: any series can. A matcher that accepts an empty value
    /// narrows nothing, since a series without the label reads as empty.
    func candidates(_ matchers: [LabelMatcher], _ budget: inout MatchingBudget) throws(BoundedRegex.BudgetExceeded) -> [Int]? {
        var shortest: [Int]?
        for matcher in matchers where matcher.operation == .equal && !matcher.value.isEmpty {
            guard let byValue = postings[matcher.name] else { continue }
            let list = byValue[ExactString(matcher.value)] ?? []
            if list.count < shortest?.count ?? .max { shortest = list }
        }
        if let shortest { return shortest }
        for matcher in matchers where matcher.operation == .matches {
            guard let byValue = postings[matcher.name], let regex = matcher.regex, try !regex.matches("") else { continue }
            var union: [Int] = []
            for (value, list) in byValue {
                try budget.spend()
                if try regex.matches(value.text) { union += list }
            }
            return union.sorted()
        }
        return nil
    }
}

/// How long matching one rule's series may take in an evaluation: the clock is read every
/// 64 steps (each match is bounded, but a hundred thousand of them are not).
struct MatchingBudget {
    static let limit = Duration.milliseconds(100)
    private let started = ContinuousClock.now
    private var steps = 0
    let matchers: [LabelMatcher]

    init(_ matchers: [LabelMatcher]) { self.matchers = matchers }

    mutating func spend() throws(BoundedRegex.BudgetExceeded) {
        steps += 1
        if steps % 64 == 0, !matchers.isEmpty, ContinuousClock.now - started > Self.limit {
            throw BoundedRegex.BudgetExceeded(pattern: matchers.map(\.description).joined(separator: ","))
        }
    }
}
