import TelltaleCore
import TelltaleMetrics

/// The wait a receiver asks for after a 429: the `Retry-After` header (seconds) or a JSON
/// body's `retry_after` (Discord), the longer of the two, clamped to `maximum`.
///
/// Both come from a third party: `inf`, `nan`, `1e20` or a negative number must neither
/// trap nor stop the sender for longer than the maximum. An HTTP-date or garbage counts as
/// absent, and the caller's default applies.
package enum RetryAfter {
    package static let maximum = 3600.0

    package static func parse(_ response: OutboundResponse) -> Duration? {
        let header = response.headers["retry-after"].flatMap { Double($0.trimming(" \t")) }
        var body: Double?
        if response.headers["content-type"]?.lowercased().contains("json") ?? true,
           case .object(let members) = JSONValue.parse(response.body) {
            body = members["retry_after"]?.number
        }
        let usable = [header, body].compactMap { $0 }.filter { !$0.isNaN }
        return usable.max().flatMap { Checked.clampedDuration(seconds: $0, max: maximum) }
    }
}
