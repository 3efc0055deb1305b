import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// One SQL-defined family. In `current` mode each run's rows are the family; in
/// `incremental` mode rows newer than the watermark are added to counters or histograms
/// that live as long as the process.
public final class SQLMetricCollector: Collector {
    public let name: String
    public let schedule: Schedule
    let query: SQLMetricConfig
    let client: any PostgresQuerying

    private struct State {
        var accumulated: FamilyBuilder
        var watermark: Watermark
        var dropped: Double = 0
        /// The last run's label sets, reused by a run whose rows carry the same ones.
        var rowLabels = PositionalLabels()
    }

    private let state: Mutex<State>

    public var settings: CollectorSettings { CollectorSettings(client.connectionSettings, query) }

    package init(client: any PostgresQuerying, query: SQLMetricConfig) {
        self.name = "sql:\(client.target):\(query.descriptor.name)"
        self.schedule = query.schedule
        self.query = query
        self.client = client
        let start: String
        if case .incremental(_, let value) = query.mode { start = value } else { start = "" }
        state = Mutex(State(accumulated: FamilyBuilder(query.descriptor, buckets: query.buckets), watermark: Watermark(text: start)))
    }

    public func collect() async throws -> CollectionResult {
        let parameters: [String?]
        if case .incremental = query.mode {
            parameters = [state.withLock { $0.watermark.text }]
        } else {
            parameters = []
        }
        let result: PGResult
        do {
            result = try await client.query(query.sql, parameters: parameters, timeouts: query.timeouts)
        } catch {
            throw CollectionProblem(error)
        }
        let columns = try ResolvedColumns(result, query)
        var problems = RowProblems()
        let family: MetricFamily
        switch query.mode {
        case .current:
            family = current(result.rows, columns, &problems)
        case .incremental:
            family = incremental(result.rows, columns, &problems)
        }
        let dropped = state.withLock { $0.dropped }
        var droppedFamily = FamilyBuilder(CollectorHealth.seriesDropped)
        droppedFamily.set(dropped, ["collector": name, "metric": query.descriptor.name])
        return CollectionResult(families: [family, droppedFamily.build()], problems: problems.list)
    }

    /// Builds the family from this run's rows alone.
    private func current(_ rows: [[PGValue]], _ columns: ResolvedColumns, _ problems: inout RowProblems) -> MetricFamily {
        var builder = FamilyBuilder(query.descriptor)
        var dropped = 0.0
        var rowLabels = state.withLock { $0.rowLabels }
        defer {
            rowLabels.endRun()
            state.withLock { [rowLabels] in $0.rowLabels = rowLabels }
        }
        for row in rows {
            for (pairs, value) in samples(row, columns, &problems) {
                let labels = rowLabels.labels(pairs)
                if builder.contains(labels) {
                    problems.add("duplicate_labels", "rows repeat the label set \(labels.map { "\($0.name)=\($0.value)" })")
                } else if builder.seriesCount >= query.maxSeries {
                    dropped += 1
                } else {
                    builder.set(value, labels)
                    rowLabels.keep(labels)
                }
            }
        }
        state.withLock { $0.dropped += dropped }
        return builder.build()
    }

    /// Adds this run's new rows to the running totals and advances the watermark past them,
    /// so no row is ever counted twice (rows with bad values are skipped, not retried).
    private func incremental(_ rows: [[PGValue]], _ columns: ResolvedColumns, _ problems: inout RowProblems) -> MetricFamily {
        state.withLock { state in
            for row in rows {
                if let watermarkColumn = columns.watermark { state.watermark.advance(to: row[watermarkColumn]) }
                let samples = columns.values.isEmpty
                    ? [(labelPairs(row, columns), 1.0)]
                    : samples(row, columns, &problems)
                for (pairs, value) in samples {
                    let labels = Labels(pairs)
                    if !value.isFinite {
                        // Added once, ±Inf or NaN would stick in the running total until restart.
                        problems.add("bad_value", "\(value) cannot be added to a running total")
                    } else if !state.accumulated.contains(labels) && state.accumulated.seriesCount >= query.maxSeries {
                        state.dropped += 1
                    } else if query.descriptor.type == .histogram {
                        state.accumulated.observe(value, labels)
                    } else if value < 0 {
                        problems.add("bad_value", "negative increment \(value) for a counter")
                    } else {
                        state.accumulated.add(value, labels)
                    }
                }
            }
            return state.accumulated.build()
        }
    }

    /// One sample (its label pairs and value) per value column of a row; NULL or non-numeric
    /// values are reported and skipped.
    private func samples(_ row: [PGValue], _ columns: ResolvedColumns, _ problems: inout RowProblems) -> [([(String, String)], Double)] {
        let labels = labelPairs(row, columns)
        return columns.values.compactMap { column in
            guard let value = row[column.index].number else {
                let shown = row[column.index] == .null ? "NULL" : "\"\(row[column.index].text.prefix(40))\""
                problems.add("bad_value", "column \(column.name) is \(shown), not a number")
                return nil
            }
            let extra = query.valueLabel.map { [($0, column.name)] } ?? []
            return (labels + extra, value)
        }
    }

    /// A row's label pairs: the target's and the label columns'.
    private func labelPairs(_ row: [PGValue], _ columns: ResolvedColumns) -> [(String, String)] {
        [("target", client.target)] + columns.labels.map { ($0.name, row[$0.index].text) }
    }
}

/// The configured columns, found in a result (checked on every run, since a query's
/// columns can change under Telltale when the schema does).
private struct ResolvedColumns {
    struct Column {
        let name: String
        let index: Int
    }

    let labels: [Column]
    let values: [Column]
    let watermark: Int?

    init(_ result: PGResult, _ query: SQLMetricConfig) throws {
        var missing: [String] = []
        func resolve(_ name: String) -> Column? {
            guard let index = result.columnIndex(name) else {
                missing.append(name)
                return nil
            }
            return Column(name: name, index: index)
        }
        labels = query.labelColumns.compactMap(resolve)
        values = query.valueColumns.compactMap(resolve)
        if case .incremental(let column, _) = query.mode {
            watermark = resolve(column)?.index
        } else {
            watermark = nil
        }
        guard missing.isEmpty else {
            throw CollectionProblem(reason: "missing_column",
                                    "the query returns no column \(missing.joined(separator: ", ")) (it returns \(result.columns.joined(separator: ", ")))")
        }
    }
}

/// The highest watermark seen. Integers compare exactly as integers (a bigint id above 2^53
/// would collide as a Double), other numbers and timestamps as Doubles, the rest as text.
struct Watermark: Sendable {
    private enum Key: Sendable {
        case integer(Int64)
        case number(Double)
        case text(String)

        static func of(_ value: PGValue) -> Key {
            switch value {
            case .int(let integer): .integer(integer)
            case .text(let text): Int64(text).map(Key.integer) ?? value.number.map(Key.number)
                ?? PGTimestamp.parse(text).map(Key.number) ?? .text(text)
            default: value.number.map(Key.number) ?? .text(value.text)
            }
        }

        func isBelow(_ other: Key) -> Bool {
            switch (self, other) {
            case (.integer(let a), .integer(let b)): a < b
            case (.text(let a), .text(let b)): a < b
            case (.text, _): true
            case (_, .text): false
            default: asDouble < other.asDouble
            }
        }

        private var asDouble: Double {
            switch self {
            case .integer(let value): Double(value)
            case .number(let value): value
            case .text: .nan
            }
        }
    }

    private(set) var text: String
    private var key: Key

    init(text: String) {
        self.text = text
        self.key = Key.of(.text(text))
    }

    mutating func advance(to value: PGValue) {
        guard value != .null else { return }
        let candidate = Key.of(value)
        if key.isBelow(candidate) {
            key = candidate
            text = value.text
        }
    }
}

/// Row problems of one run, one per reason.
private struct RowProblems {
    private var tally = ProblemTally()

    mutating func add(_ reason: String, _ message: @autoclosure () -> String) {
        tally.add(reason, reason: reason, message())
    }

    var list: [CollectionProblem] { tally.list }
}
