import Hummingbird
import Logging
import ServiceLifecycle
import TelltaleAlerting
import TelltaleClients
import TelltaleCollectors
import TelltaleCore
import TelltaleMetrics
import TelltaleServer

/// Wires configuration, collectors, store and server together.
public struct TelltaleApp: Sendable {
    public let config: TelltaleConfig
    public let store = MetricStore()
    public let runner: CollectorRunner<ContinuousClock>
    public let alerting: AlertingService?
    private let connections = ConnectionStats()
    private let logger: Logger

    public init(config: TelltaleConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        let alerting = config.alerting.enabled ? AlertingService(config: config.alerting, store: store, logger: logger) : nil
        self.alerting = alerting
        let connections = connections
        runner = CollectorRunner(collectors: Self.collectors(config), store: store, logger: logger,
                                 afterEachRun: { alerting?.collectionFinished() }, moreSelfFamilies: { connections.families })
    }

    /// The enabled collectors, in the order the status page lists them.
    static func collectors(_ config: TelltaleConfig) -> [any Collector] {
        let shared = SharedClients(httpThreads: config.httpThreads)
        return config.sources.flatMap { $0.collectors(shared) }
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    public func serve() async throws {
        for warning in config.warnings { logger.warning("\(warning)") }
        let metrics = MetricsEndpoint(store: store, guardian: AuthCheck(config.server.auth))
        let router = HTTPServer.router(metrics: metrics, health: runner.health, alerting: alerting)
        let listen = config.server.listen
        let logger = logger
        let (limits, connections) = (config.server.limits, connections)
        let app = Application(
            router: router,
            // The guard first, so that it sees the fast path's requests and responses too.
            server: .http1(configuration: .init(additionalChannelHandlers: [
                ConnectionGuard(limits: limits, stats: connections), MetricsFastPath(endpoint: metrics),
            ])),
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "telltale"),
            services: [runner] + (alerting.map { [$0] } ?? []),
            onServerRunning: { _ in
                logger.info("listening", metadata: ["address": "\(listen)", "version": "\(TelltaleVersion.current)"])
            },
            logger: logger)
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
    }

    /// Runs every collector once; returns the text exposition and whether all succeeded.
    public func once() async -> (exposition: String, succeeded: Bool) {
        let succeeded = await runner.runOnce()
        return (String(buffer: store.exposition(format: .text).joined), succeeded)
    }
}
