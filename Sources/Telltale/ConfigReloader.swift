import Logging
import ServiceLifecycle
import Synchronization
import TelltaleAlerting
import TelltaleCollectors
import TelltaleCore
import TelltaleMetrics
import TelltaleServer
import UnixSignals

/// Where the running configuration came from, so that a reload reads it the same way.
public struct ConfigSource: Sendable {
    /// The YAML file; without one, only the defaults run and a reload changes nothing.
    public var path: String?
    /// `--listen`, which overrides `server.listen` at every reading.
    public var listen: ListenAddress?
    /// `--web.config.file`.
    public var webConfigPath: String?

    public init(path: String?, listen: ListenAddress? = nil, webConfigPath: String? = nil) {
        self.path = path
        self.listen = listen
        self.webConfigPath = webConfigPath
    }

    /// Reads and validates the files (and every `*_file` secret and certificate they name) in full.
    public func load() throws(ConfigErrors) -> TelltaleConfig {
        var config = try path.map { path throws(ConfigErrors) in try TelltaleConfig.load(path: path) } ?? TelltaleConfig()
        if let listen { config.server.listen = listen }
        if let webConfigPath { try config.server.use(WebConfig.load(path: webConfigPath)) }
        return config
    }
}

/// Applies a changed configuration without a restart, on SIGHUP and on `POST /-/reload`.
///
/// The new file is read and validated in full first, off the cooperative pool (it may name
/// secret files on a slow mount); on any problem the running configuration stays. Otherwise
/// the collectors are replaced through `CollectorRunner.replace(with:)`: unchanged ones keep
/// running with their state. Reloads run one at a time, in the order they were asked for.
final class ConfigReloader: Service, Sendable {
    /// A configuration (or secret) file that takes longer than this to read fails the reload.
    static let readLimit = Duration.seconds(10)

    private let source: ConfigSource
    private let running: Mutex<TelltaleConfig>
    private let status: ReloadStatus
    private let apply: @Sendable (TelltaleConfig) async -> CollectorRunner<ContinuousClock>.Replacement
    private let publishSelfMetrics: @Sendable () async -> Void
    private let logger: Logger
    /// The last reload asked for: the next one waits for it.
    private let latest = Mutex<Task<String?, Never>?>(nil)
    /// Reads the files: a read hung on a dead mount holds this thread only, and the reloads
    /// after it fail at `readLimit` instead of taking the threads the collectors use.
    private let readThread = BlockingThreads(count: 1)

    init(source: ConfigSource, running config: TelltaleConfig, status: ReloadStatus, logger: Logger,
         apply: @escaping @Sendable (TelltaleConfig) async -> CollectorRunner<ContinuousClock>.Replacement,
         publishSelfMetrics: @escaping @Sendable () async -> Void) {
        self.source = source
        running = Mutex(config)
        self.status = status
        self.logger = logger
        self.apply = apply
        self.publishSelfMetrics = publishSelfMetrics
    }

    /// Reloads on every SIGHUP until shutdown.
    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in hangups {
                self.logger.info("SIGHUP: reloading the configuration")
                _ = await self.reload()
            }
        }
    }

    /// Reloads after any reload already asked for; nil on success, else why it failed.
    func reload() async -> String? {
        let task = latest.withLock { latest in
            let previous = latest
            let task = Task { () -> String? in
                _ = await previous?.value
                return await self.reloadNow()
            }
            latest = task
            return task
        }
        return await task.value
    }

    private func reloadNow() async -> String? {
        let source = source
        let loaded = await readThread.run(within: Self.readLimit) { Result { () throws(ConfigErrors) in try source.load() } }
        let outcome: String?
        switch loaded {
        case .success(let config)?:
            outcome = Self.conflict(running: running.withLock { $0 }, new: config)
            if outcome == nil { await applyReloaded(config) }
        case .failure(let errors)?:
            outcome = errors.description
        case nil:
            outcome = "the configuration was not read within \(Self.readLimit)"
        }
        if let outcome {
            logger.error("configuration reload failed; the running configuration stays", metadata: ["problem": "\(outcome)"])
        }
        status.record(succeeded: outcome == nil)
        await publishSelfMetrics()
        return outcome
    }

    /// Why `new` cannot be applied over what runs, or nil.
    static func conflict(running: TelltaleConfig, new: TelltaleConfig) -> String? {
        // Alerting is not reloaded: its System Health writer keeps reading the probe it started with.
        let probes = new.source(ProbeList.self)?.probes.map(\.name) ?? []
        return running.alerting.systemHealth.probeProblem(configured: probes).map {
            "\(SystemHealthConfig.probePath) of the running alerting section: \($0)"
        }
    }

    private func applyReloaded(_ config: TelltaleConfig) async {
        for warning in config.warnings { logger.warning("\(warning)") }
        let previous = running.withLock { $0 }
        let effective = Self.applicable(config, running: previous)
        let change = await apply(effective)
        running.withLock { $0 = effective }
        for section in Self.restartOnlyChanges(from: previous, to: config) {
            logger.warning("configuration changed in a part a reload does not apply; restart to apply it",
                           metadata: ["section": "\(section)"])
        }
        logger.info("configuration reloaded", metadata: [
            "kept": "\(change.kept.count)", "replaced": "\(change.replaced.joined(separator: ","))",
            "added": "\(change.added.joined(separator: ","))", "removed": "\(change.removed.joined(separator: ","))",
        ])
    }

    /// `new` with what only a restart applies as it runs: what `running` holds afterwards,
    /// so that the next reload compares with what really runs.
    static func applicable(_ new: TelltaleConfig, running: TelltaleConfig) -> TelltaleConfig {
        var effective = new
        effective.server.listen = running.server.listen
        effective.server.limits = running.server.limits
        effective.logLevel = running.logLevel
        effective.httpThreads = running.httpThreads
        effective.alerting = running.alerting
        if (running.server.webConfig?.tls == nil) != (new.server.webConfig?.tls == nil) {
            effective.server.webConfig?.tls = running.server.webConfig?.tls
        }
        return effective
    }

    /// The settings that only a restart applies: the listener (TLS on or off included), the
    /// log level, the HTTP thread pool and alerting (its leader holds connections and state
    /// made from them).
    static func restartOnlyChanges(from old: TelltaleConfig, to new: TelltaleConfig) -> [String] {
        var changed: [String] = []
        if old.server.listen != new.server.listen { changed.append("server.listen") }
        if old.server.limits != new.server.limits { changed.append("server (connection limits)") }
        if (old.server.webConfig?.tls == nil) != (new.server.webConfig?.tls == nil) { changed.append("tls_server_config (TLS on or off)") }
        if old.logLevel != new.logLevel { changed.append("log.level") }
        if old.httpThreads != new.httpThreads { changed.append("http_threads") }
        if old.alerting != new.alerting { changed.append("alerting") }
        return changed
    }
}

/// The outcome of the reloads so far, for the self-metrics.
final class ReloadStatus: Sendable {
    static let lastSuccessful = MetricDescriptor(
        "telltale_config_last_reload_successful", .gauge,
        help: "Whether the last configuration reload succeeded (1) or failed and left the running configuration (0).")
    static let lastSuccessTimestamp = MetricDescriptor(
        "telltale_config_last_reload_success_timestamp_seconds", .gauge,
        help: "Unix time of the last successful configuration load (the start, then each successful reload).", unit: "seconds")
    static let reloads = MetricDescriptor(
        "telltale_config_reloads", .counter, help: "Configuration reloads asked for (SIGHUP, /-/reload), by result.")

    private struct State {
        var lastSuccessful = true
        var lastSuccess = UnixTime.now.seconds
        var reloads = FamilyBuilder(ReloadStatus.reloads)

        init() {
            for result in ["success", "failure"] { reloads.add(0, ["result": result]) }
        }
    }

    private let state = Mutex(State())

    func record(succeeded: Bool) {
        state.withLock { state in
            state.lastSuccessful = succeeded
            if succeeded { state.lastSuccess = UnixTime.now.seconds }
            state.reloads.add(1, ["result": succeeded ? "success" : "failure"])
        }
    }

    /// The reload self-metrics, published with the collectors' health.
    var families: [MetricFamily] {
        state.withLock { state in
            var successful = FamilyBuilder(Self.lastSuccessful)
            successful.set(state.lastSuccessful ? 1 : 0)
            var timestamp = FamilyBuilder(Self.lastSuccessTimestamp)
            timestamp.set(state.lastSuccess)
            return [successful.build(), timestamp.build(), state.reloads.build()]
        }
    }
}
