import ArgumentParser
import CGlibcExtras
import Glibc
import Logging
import Telltale
import TelltaleAlerting
import TelltaleClients
import TelltaleCore
import TelltaleServer

/// The entry point. It ends the process with `_exit`, not `exit`: a thread left in a hung
/// libpq, hiredis or libcurl call, or a connection being freed on a client's thread, must
/// not race the C libraries' exit handlers (OpenSSL's cleanup), which crashed `telltale
/// migrate` after its output about once in fifty runs on a busy machine.
///
/// `main` is synchronous on purpose. An async `main` ends the main thread in `dispatch_main`,
/// whose `pthread_exit` unwinds that thread's stack and so maps about 0.8 MiB of the binary's
/// unwind tables for good. Here the command runs in a task and the main thread only waits;
/// nothing in Telltale or its libraries runs on the main actor.
@main
enum Entry {
    static func main() {
        // SIGHUP reloads `serve`'s configuration once the reloader listens; until then (and
        // for the other commands) its default action would end the process, as a
        // `systemctl reload` right after the start would.
        signal(SIGHUP, SIG_IGN)
        LocalTimeZone.nameUTCAsGMT()  // before any thread starts
        Task.detached {
            let code = await run()
            fflush(nil)
            _exit(code)
        }
        while true { pause() }
    }

    /// Runs the command line's command; returns the exit code.
    private static func run() async -> Int32 {
        do {
            var command = try TelltaleCommand.parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
            return 0
        } catch {
            let code = TelltaleCommand.exitCode(for: error).rawValue
            let message = TelltaleCommand.fullMessage(for: error)
            if code == 0 {
                if !message.isEmpty { print(message) }  // --help, --version
            } else if !message.isEmpty {
                printError(message)
            }
            return code
        }
    }
}

/// `telltale`: a thin front end over TelltaleApp.
struct TelltaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "telltale",
        abstract: "Watches Postgres, Redis job queues, provider balances and hosts; serves Prometheus metrics.",
        version: TelltaleVersion.current,
        subcommands: [Serve.self, CheckConfig.self, Once.self, Migrate.self, TestNotify.self],
        defaultSubcommand: Serve.self)
}

/// Options shared by every command that reads a configuration.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "YAML configuration file. Without it, only the process and host collectors run.")
    var config: String?

    /// Exit code for an invalid configuration, as documented in the README.
    static let invalidConfigExitCode: Int32 = 2

    func load() throws -> TelltaleConfig {
        try Self.load(ConfigSource(path: config))
    }

    /// The app, or exit code 2 after printing why it cannot start (TLS material).
    static func app(config: TelltaleConfig, source: ConfigSource, logger: Logger) throws -> TelltaleApp {
        do {
            return try TelltaleApp(config: config, source: source, logger: logger)
        } catch {
            printError(error.description)
            throw ExitCode(invalidConfigExitCode)
        }
    }

    /// The configuration, or exit code 2 after printing every problem.
    static func load(_ source: ConfigSource) throws -> TelltaleConfig {
        do {
            return try source.load()
        } catch {
            printError(error.description)
            throw ExitCode(invalidConfigExitCode)
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the collectors and serve /metrics (the default command).")

    @OptionGroup var options: ConfigOptions

    @Option(name: .long, help: "HOST:PORT to listen on, overriding server.listen (default :\(ListenAddress.defaultPort)).")
    var listen: String?

    @Flag(name: .customLong("web.enable-lifecycle"), help: "Serve POST /-/reload (SIGHUP reloads in any case).")
    var enableLifecycle = false

    @Option(name: .customLong("web.config.file"),
            help: "Web configuration in the exporter toolkit's format: TLS, bcrypt basic-auth users, response headers.")
    var webConfigFile: String?

    func run() async throws {
        // Two malloc arenas rather than glibc's eight per core: Telltale's threads allocate
        // little, and idle arenas would only hold on to resident memory.
        mallopt(M_ARENA_MAX, 2)
        // Large blocks (encoded families, pipelines, query results) are mapped and unmapped on
        // their own. Left to itself glibc raises this threshold as they are freed and then
        // carves them from the heap, where they fragment it and stay resident.
        mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        var source = ConfigSource(path: options.config, webConfigPath: webConfigFile)
        if let listen {
            do {
                source.listen = try ListenAddress.parse(listen)
            } catch {
                printError("--listen: \(error.description)")
                throw ExitCode(ConfigOptions.invalidConfigExitCode)
            }
        }
        let config = try ConfigOptions.load(source)
        let logger = makeLogger(config.logLevel)
        try await ConfigOptions.app(config: config, source: source, logger: logger).serve(enableLifecycle: enableLifecycle)
    }
}

struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate a configuration file and exit: 0 when valid, 2 otherwise.")

    @Option(name: .long, help: "YAML configuration file.")
    var config: String

    @Option(name: .customLong("web.config.file"), help: "Web configuration file to validate with it.")
    var webConfigFile: String?

    func run() async throws {
        let loaded = try ConfigOptions.load(ConfigSource(path: config, webConfigPath: webConfigFile))
        for warning in loaded.warnings { printError("warning: \(warning)") }
        print("\(config): configuration is valid" + (webConfigFile.map { "; \($0): web configuration is valid" } ?? ""))
    }
}

struct Once: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every collector once, print the exposition, exit 1 if any collector failed.")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let config = try options.load()
        let app = try ConfigOptions.app(config: config, source: ConfigSource(path: options.config), logger: makeLogger(config.logLevel))
        let (exposition, succeeded) = await app.once()
        print(exposition, terminator: "")
        if !succeeded { throw ExitCode.failure }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or upgrade Telltale's tables in the alerting database (idempotent).")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let alerting = try options.loadAlerting()
        do {
            let applied = try await AlertingService.migrate(config: alerting)
            print(applied.isEmpty ? "schema is up to date" : "applied migrations: \(applied.map(String.init).joined(separator: ", "))")
        } catch {
            printError("migrate failed: \(error.message)")
            throw ExitCode.failure
        }
    }
}

struct TestNotify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-notify", abstract: "Send a test message to a channel and print the outcome (exit 1 if not delivered).")

    @OptionGroup var options: ConfigOptions

    @Argument(help: "The channel's name in telltale_channels.")
    var channel: String

    func run() async throws {
        let (delivered, message) = await AlertingService.testNotify(channel: channel, config: try options.loadAlerting())
        print(message)
        if !delivered { throw ExitCode.failure }
    }
}

extension ConfigOptions {
    /// The alerting section, which these commands need.
    func loadAlerting() throws -> AlertingConfig {
        let config = try load()
        guard config.alerting.enabled else {
            printError("alerting: the configuration has no enabled alerting section (alerting.dsn)")
            throw ExitCode(Self.invalidConfigExitCode)
        }
        return config.alerting
    }
}

func makeLogger(_ level: Logger.Level) -> Logger {
    var logger = Logger(label: "telltale") { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = level
    return logger
}

func printError(_ message: String) {
    var standardError = StandardErrorStream()
    print(message, to: &standardError)
}

struct StandardErrorStream: TextOutputStream {
    mutating func write(_ string: String) {
        // Straight to file descriptor 2: the C `stderr` global is not concurrency-safe in Swift 6.
        var bytes = Array(string.utf8)
        _ = Glibc.write(2, &bytes, bytes.count)
    }
}
