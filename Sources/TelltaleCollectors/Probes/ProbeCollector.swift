import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// An HTTP probe of one of the app's own endpoints: success, status code, latency, and the
/// error ratio over a window (what the admin schema's apiLatencyMs / apiErrorRate watch).
/// A failing target is a probe result, not a collector failure.
public final class ProbeCollector: Collector {
    static let success = MetricDescriptor("telltale_probe_success", .gauge, help: "1 if the last probe got the expected answer.")
    static let status = MetricDescriptor(
        "telltale_probe_status_code", .gauge, help: "HTTP status of the last probe (0 when no response).")
    static let duration = MetricDescriptor(
        "telltale_probe_duration_seconds", .histogram, help: "Duration of probes.", unit: "seconds")
    static let errorRatio = MetricDescriptor(
        "telltale_probe_error_ratio", .gauge, help: "Share of failed probes over the configured window (0-1).", unit: "ratio")

    public let name: String
    public let schedule: Schedule
    let config: ProbeConfig
    let http: any HTTPSending

    private struct State {
        var duration: FamilyBuilder
        /// Outcomes within the window, oldest first.
        var recent: [(at: ContinuousClock.Instant, succeeded: Bool)] = []
    }

    private let state: Mutex<State>

    public var settings: CollectorSettings { CollectorSettings(config) }

    package init(config: ProbeConfig, http: any HTTPSending) {
        self.name = "probe:\(config.name)"
        self.schedule = config.schedule
        self.config = config
        self.http = http
        state = Mutex(State(duration: FamilyBuilder(Self.duration, buckets: config.buckets)))
    }

    public func collect() async throws -> CollectionResult {
        let clock = ContinuousClock()
        let started = clock.now
        var statusCode = 0
        var succeeded = false
        if let response = try? await http.send(config.request) {
            statusCode = response.status
            succeeded = statusMatches(response.status) && bodyMatches(response.body)
        }
        let elapsed = (clock.now - started).seconds
        let labels: Labels = ["target": config.name]
        var success = FamilyBuilder(Self.success)
        success.set(succeeded ? 1 : 0, labels)
        var status = FamilyBuilder(Self.status)
        status.set(Double(statusCode), labels)
        var ratio = FamilyBuilder(Self.errorRatio)
        let duration = state.withLock { state in
            state.duration.observe(elapsed, labels)
            state.recent.append((clock.now, succeeded))
            state.recent.removeAll { clock.now - $0.at > config.errorWindow }
            let failures = state.recent.filter { !$0.succeeded }.count
            ratio.set(Double(failures) / Double(state.recent.count), labels)
            return state.duration.build()
        }
        return CollectionResult(families: [success.build(), status.build(), duration, ratio.build()])
    }

    private func statusMatches(_ code: Int) -> Bool {
        config.expectedStatus.isEmpty ? (200..<300).contains(code) : config.expectedStatus.contains(code)
    }

    private func bodyMatches(_ body: [UInt8]) -> Bool {
        guard let expected = config.expectedBody else { return true }
        return String(decoding: body, as: UTF8.self).contains(expected)
    }
}
