import TelltaleCore
import TelltaleMetrics

/// One column value of a query result, typed from its PostgreSQL type.
public enum PGValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    /// `numeric`, kept as its exact decimal text.
    case numeric(String)
    /// `timestamp`, `timestamptz` and `date`: Unix seconds (UTC) and the server's exact text,
    /// which is what goes back as a watermark parameter (a Double would lose microseconds).
    case timestamp(seconds: Double, text: String)
    case text(String)

    /// Built-in type OIDs (pg_type.h), fixed across PostgreSQL versions.
    package static func parse(_ text: String, typeOID: UInt32) -> PGValue {
        switch typeOID {
        case 16: return .bool(text == "t")
        case 20, 21, 23, 26, 28: return Int64(text).map(PGValue.int) ?? .text(text)
        case 700, 701: return Double(text).map(PGValue.double) ?? .text(text)
        case 1700: return .numeric(text)
        case 1082, 1114, 1184: return PGTimestamp.parse(text).map { .timestamp(seconds: $0, text: text) } ?? .text(text)
        default: return .text(text)
        }
    }

    /// The value as a sample value: numbers, numeric, booleans (0/1), timestamps (Unix
    /// seconds) and numeric text. Nil for NULL and anything else.
    public var number: Double? {
        switch self {
        case .null: nil
        case .bool(let value): value ? 1 : 0
        case .int(let value): Double(value)
        case .double(let value): value
        case .numeric(let text): Double(text)
        case .timestamp(let seconds, _): seconds
        case .text(let text): Double(text.trimming(" "))
        }
    }

    /// The text of a value that may be NULL.
    public var optionalText: String? { self == .null ? nil : text }

    /// The value as a label value or query parameter; NULL becomes the empty string.
    public var text: String {
        switch self {
        case .null: ""
        case .bool(let value): value ? "true" : "false"
        case .int(let value): String(value)
        case .double(let value): String(value)
        case .numeric(let text), .text(let text), .timestamp(_, let text): text
        }
    }
}

/// A query result: column names and types, and rows of typed values.
public struct PGResult: Sendable {
    public let columns: [String]
    public let rows: [[PGValue]]

    public func columnIndex(_ name: String) -> Int? { columns.firstIndex(of: name) }
}

/// Timestamps in PostgreSQL's ISO output (Telltale's sessions use DateStyle ISO, TimeZone UTC).
package enum PGTimestamp {
    /// Parses `2026-11-21`, `2026-11-21 17:03:55.25` or `2026-11-21 17:03:55.25+00[:30]`.
    package static func parse(_ text: String) -> Double? {
        if text == "infinity" { return .infinity }
        if text == "-infinity" { return -.infinity }
        let bytes = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= bytes.count else { return nil }
            return Int(String(decoding: bytes[range], as: UTF8.self))
        }
        guard bytes.count >= 10, let year = number(0..<4), let month = number(5..<7), let day = number(8..<10) else { return nil }
        var seconds = Double(daysFromCivil(year: year, month: month, day: day) * 86400)
        guard bytes.count > 10 else { return seconds }
        guard let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19) else { return nil }
        seconds += Double(hour * 3600 + minute * 60 + second)
        var index = 19
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            let start = index
            index += 1
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            seconds += Double(String(decoding: bytes[start..<index], as: UTF8.self)) ?? 0
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            let sign: Double = bytes[index] == UInt8(ascii: "+") ? 1 : -1
            let offsetHours = number(index + 1..<index + 3) ?? 0
            let offsetMinutes = index + 3 < bytes.count && bytes[index + 3] == UInt8(ascii: ":") ? number(index + 4..<index + 6) ?? 0 : 0
            seconds -= sign * Double(offsetHours * 3600 + offsetMinutes * 60)
        }
        return seconds
    }

    // Howard Hinnant's days_from_civil: days since 1970-01-01 of a proleptic Gregorian date.
    package static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
