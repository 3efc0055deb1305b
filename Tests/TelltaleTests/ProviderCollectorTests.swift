import TelltaleMetrics
import Testing
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore

/// The provider collector against scripted HTTP responses.
@Suite struct ProviderCollectorTests {
    static let balances = #"{"btc": {"amount": 0.5, "pendingAmount": "0.25"}, "eth": {"amount": 2, "pendingAmount": 0}}"#

    func collector(_ http: ScriptedHTTP) -> ProviderCollector {
        var config = ProviderConfig(name: "np", request: OutboundRequest(url: "https://api.example/v1/balance"),
                                    rules: [ProviderConfig.presets["nowpayments"]!.rule])
        config.secrets = ["key-123"]
        return ProviderCollector(config: config, http: http)
    }

    /// Balances of a good response stay exported, marked stale, while later fetches fail.
    @Test func balancesThenStaleBalancesAfterFailures() async throws {
        let collector = collector(ScriptedHTTP([
            .success(.with(200, body: Self.balances)),
            .success(.with(503, body: #"{"message": "maintenance for key-123"}"#)),
            .failure(OutboundHTTPError(kind: .timeout, message: "Operation timed out after 8000 milliseconds")),
        ]))
        let good = try await collector.collect()
        #expect(good.problems.isEmpty)
        #expect(good.value("telltale_provider_balance", ["provider": "np", "currency": "btc"]) == 0.5)
        #expect(good.value("telltale_provider_balance", ["currency": "eth"]) == 2)
        #expect(good.value("telltale_provider_pending_balance", ["currency": "btc"]) == 0.25)
        #expect(good.value("telltale_provider_up") == 1)
        #expect(good.value("telltale_provider_stale") == 0)
        #expect(good.value("telltale_provider_last_success_timestamp_seconds") != nil)
        #expect(good.histogram("telltale_provider_request_duration_seconds", ["provider": "np"])?.count == 1)

        let refused = try await collector.collect()
        #expect(refused.problems.map(\.reason) == ["http_5xx"])
        #expect(refused.problems.first?.message == "HTTP 503: maintenance for ***")
        #expect(refused.value("telltale_provider_balance", ["currency": "btc"]) == 0.5)
        #expect(refused.value("telltale_provider_up") == 0)
        #expect(refused.value("telltale_provider_stale") == 1)

        let timedOut = try await collector.collect()
        #expect(timedOut.problems.map(\.reason) == ["timeout"])
        #expect(timedOut.value("telltale_provider_errors", ["reason": "http_5xx"]) == 1)
        #expect(timedOut.value("telltale_provider_errors", ["reason": "timeout"]) == 1)
        #expect(timedOut.histogram("telltale_provider_request_duration_seconds")?.count == 3)
    }

    /// After a 429 the provider is not asked again before its Retry-After.
    @Test func rateLimitedWaitsForRetryAfter() async throws {
        let http = ScriptedHTTP([.success(.with(429, headers: ["retry-after": "600"])), .success(.with(200, body: Self.balances))])
        let collector = collector(http)
        #expect(try await collector.collect().problems.map(\.reason) == ["rate_limited"])
        let waiting = try await collector.collect()
        #expect(waiting.problems.isEmpty)
        #expect(waiting.value("telltale_provider_up") == 0)
        #expect(http.requests == 1)
    }

    @Test(arguments: [
        ("<html>busy</html>", "bad_json"),
        (#"{"btc": {"pending": 1}}"#, "missing_field"),
        (#"{"btc": {"amount": "lots"}}"#, "bad_value"),
    ])
    func unusableBodiesAreReportedByReason(body: String, reason: String) async throws {
        let result = try await collector(ScriptedHTTP([.success(.with(200, body: body))])).collect()
        #expect(result.problems.map(\.reason) == [reason])
        #expect(result.value("telltale_provider_errors", ["reason": reason]) == 1)
        #expect(result.family("telltale_provider_balance")?.series.isEmpty == true)
    }
}
