import TelltaleMetrics
import Testing
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore

/// The probe collector against scripted HTTP responses: a failing target is a probe result.
@Suite struct ProbeCollectorTests {
    func collector(_ http: ScriptedHTTP, expectedStatus: [Int] = [], expectedBody: String? = nil) -> ProbeCollector {
        var config = ProbeConfig(name: "api", request: OutboundRequest(url: "http://app.internal/health"))
        config.expectedStatus = expectedStatus
        config.expectedBody = expectedBody
        return ProbeCollector(config: config, http: http)
    }

    @Test func successStatusAndErrorRatioOverTheWindow() async throws {
        let collector = collector(ScriptedHTTP([
            .success(.with(200, body: "status: ok")),
            .success(.with(200, body: "status: degraded")),
            .success(.with(500)),
            .failure(OutboundHTTPError(kind: .connect, message: "Connection refused")),
        ]), expectedBody: "ok")
        var outcomes: [(success: Double?, status: Double?, ratio: Double?)] = []
        for _ in 0..<4 {
            let result = try await collector.collect()
            #expect(result.problems.isEmpty)
            outcomes.append((result.value("telltale_probe_success", ["target": "api"]), result.value("telltale_probe_status_code"),
                             result.value("telltale_probe_error_ratio")))
        }
        #expect(outcomes.map(\.success) == [1, 0, 0, 0])
        #expect(outcomes.map(\.status) == [200, 200, 500, 0])
        #expect(outcomes.map(\.ratio) == [0, 0.5, 2.0 / 3, 0.75])
        #expect(try await collector.collect().histogram("telltale_probe_duration_seconds", ["target": "api"])?.count == 5)
    }

    @Test func expectedStatusesReplaceAny2xx() async throws {
        let http = ScriptedHTTP([.success(.with(503)), .success(.with(200))])
        let collector = collector(http, expectedStatus: [503])
        #expect(try await collector.collect().value("telltale_probe_success") == 1)
        #expect(try await collector.collect().value("telltale_probe_success") == 0)
    }
}
