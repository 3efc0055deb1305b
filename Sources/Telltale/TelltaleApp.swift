import Hummingbird
import HummingbirdCore
import Logging
import ServiceLifecycle
import TelltaleAlerting
import TelltaleClients
import TelltaleCollectors
import TelltaleCore
import TelltaleMetrics
import TelltaleServer
import UnixSignals

/// Wires configuration, collectors, store and server together.
public struct TelltaleApp: Sendable {
    public let config: TelltaleConfig
    public let store = MetricStore()
    public let runner: CollectorRunner<ContinuousClock>
    public let alerting: AlertingService?
    private let reloader: ConfigReloader
    private let guardian: RequestGuard
    /// The listener's certificate and key, when the web configuration asks for TLS.
    private let tls: TLSReloader?
    private let connections = ConnectionStats()
    private let logger: Logger

    /// `source` is where `config` came from: a reload reads it again from there. Throws
    /// when the TLS material cannot be loaded.
    public init(config: TelltaleConfig, source: ConfigSource = ConfigSource(path: nil), logger: Logger) throws(ConfigErrors) {
        self.config = config
        self.logger = logger
        let alerting = config.alerting.enabled ? AlertingService(config: config.alerting, store: store, logger: logger) : nil
        self.alerting = alerting
        let guardian = RequestGuard(auth: config.server.auth, web: config.server.webConfig)
        self.guardian = guardian
        let tls = try config.server.webConfig?.tls.map { settings throws(ConfigErrors) in try TLSReloader(settings: settings, logger: logger) }
        self.tls = tls
        // For the whole process: reloaded collectors share the HTTP pool and Postgres connections.
        let shared = SharedClients(httpThreads: config.httpThreads)
        let (connections, reloads) = (connections, ReloadStatus())
        let runner = CollectorRunner(
            collectors: Self.collectors(config, shared), store: store, logger: logger,
            afterEachRun: { alerting?.collectionFinished() },
            moreSelfFamilies: { connections.families + reloads.families + (tls?.families ?? []) })
        self.runner = runner
        reloader = ConfigReloader(
            source: source, running: config, status: reloads, logger: logger,
            apply: { config in
                guardian.update(auth: config.server.auth, web: config.server.webConfig)
                if let settings = config.server.webConfig?.tls { tls?.use(settings) }
                return await runner.replace(with: Self.collectors(config, shared))
            },
            publishSelfMetrics: { await runner.publishSelfMetrics() })
    }

    /// The enabled collectors, in the order the status page lists them.
    static func collectors(_ config: TelltaleConfig, _ shared: SharedClients) -> [any Collector] {
        config.sources.flatMap { $0.collectors(shared) }
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully; reloads the configuration
    /// on SIGHUP, and on `POST /-/reload` when `enableLifecycle` is set.
    public func serve(enableLifecycle: Bool = false) async throws {
        for warning in config.warnings { logger.warning("\(warning)") }
        let metrics = MetricsEndpoint(store: store, guardian: guardian)
        let reload: (@Sendable () async -> String?)? = enableLifecycle ? { @Sendable [reloader] in await reloader.reload() } : nil
        let router = HTTPServer.router(metrics: metrics, health: runner.health, alerting: alerting, reload: reload)
        let listen = config.server.listen
        let logger = logger
        let (limits, connections) = (config.server.limits, connections)
        // The guard first, so that it sees the fast path's requests and responses too.
        let http1 = HTTP1Channel.Configuration(additionalChannelHandlers: [
            ConnectionGuard(limits: limits, stats: connections), MetricsFastPath(endpoint: metrics),
        ])
        let server: HTTPServerBuilder = tls.map { .http1(configuration: http1, tls: $0) } ?? .http1(configuration: http1)
        let app = Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "telltale"),
            services: [runner, reloader] + (tls.map { [TLSWatch(tls: $0)] } ?? []) + (alerting.map { [$0] } ?? []),
            onServerRunning: { _ in
                logger.info("listening", metadata: ["address": "\(listen)", "tls": "\(tls != nil)", "version": "\(TelltaleVersion.current)"])
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
