import Foundation
import TelltaleMetrics

/// A parsed JSON document. Decoding into an enum (rather than JSONSerialization's `Any`)
/// keeps `true` and `1` apart, which Foundation's NSNumber bridging on Linux does not.
package indirect enum JSONValue: Decodable, Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    package static func parse(_ bytes: [UInt8]) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }

    /// A JSON number, or a string holding a decimal number (`"12.50"`); nil otherwise.
    package var number: Double? {
        switch self {
        case .number(let value): value
        case .string(let text): Double(text.trimming(" ")).flatMap { $0.isFinite ? $0 : nil }
        default: nil
        }
    }

    /// Text for a label value: strings as they are, numbers and booleans printed.
    package var labelText: String? {
        switch self {
        case .string(let text): text
        case .number(let value): ExpositionEncoder.formatNumber(value)
        case .bool(let value): value ? "true" : "false"
        default: nil
        }
    }
}
