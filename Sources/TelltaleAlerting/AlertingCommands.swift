import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// The CLI's alerting commands: `notify-test` and `migrate`.
extension AlertingService {
    /// Sends a test message straight to a channel (not through the outbox).
    public static func testNotify(channel name: String, config: AlertingConfig) async -> (delivered: Bool, message: String) {
        let client = config.makeClient()
        let catalog: RuleCatalog
        do {
            catalog = try await RuleLoader(settings: config).load(client, previous: RuleCatalog())
        } catch {
            return (false, "cannot read channels: \(error.message)")
        }
        guard let channel = catalog.channels[name] else {
            return (false, catalog.channelErrors[name].map { "channel \(name) is not usable: \($0)" } ?? "no channel named \(name)")
        }
        let now = UnixTime.now.seconds
        let event = AlertEvent(rule: "telltale-test", environment: config.environment ?? "any", severity: "info", status: .test,
                               metric: "telltale_build_info", comparison: "==", threshold: 1, value: 1, labels: [:],
                               description: "A test message from Telltale.", startsAt: now, endsAt: nil, link: config.externalURL)
        let outcome = await Deliverer(http: HTTPClient(threads: 1), timeout: config.deliveryTimeout)
            .send(AlertNotification(single: event), key: "test|\(Checked.int64(now * 1000) ?? 0)", to: channel)
        switch outcome {
        case .delivered(let status):
            return (true, "\(name) (\(channel.kind.rawValue)): delivered, \(channel.kind == .email ? "SMTP" : "HTTP") \(status)")
        case .rateLimited(let after): return (false, "\(name): rate limited, retry after \(after)")
        case .transient(let reason), .permanent(let reason): return (false, "\(name) (\(channel.kind.rawValue)): not delivered: \(reason)")
        }
    }

    /// Runs the migrations; returns the versions applied now.
    public static func migrate(config: AlertingConfig) async throws(PostgresError) -> [Int] {
        let client = config.makeClient()
        return try await AlertSchema.migrate(client, timeouts: config.timeouts)
    }
}
