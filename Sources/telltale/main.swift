import ArgumentParser
import Glibc
import Logging
import Telltale

/// `telltale`: a thin front end over TelltaleApp.
@main
struct TelltaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "telltale",
        abstract: "Watches Postgres, Redis job queues, provider balances and hosts; serves Prometheus metrics.",
        version: TelltaleVersion.current,
        subcommands: [Serve.self, CheckConfig.self, Once.self],
        defaultSubcommand: Serve.self)
}

/// Options shared by every command that reads a configuration.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "YAML configuration file. Without it, only the process and host collectors run.")
    var config: String?

    /// Exit code for an invalid configuration, as documented in the README.
    static let invalidConfigExitCode: Int32 = 2

    func load() throws -> TelltaleConfig {
        guard let config else { return TelltaleConfig() }
        do {
            return try TelltaleConfig.load(path: config)
        } catch {
            printError(error.description)
            throw ExitCode(Self.invalidConfigExitCode)
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the collectors and serve /metrics (the default command).")

    @OptionGroup var options: ConfigOptions

    @Option(name: .long, help: "HOST:PORT to listen on, overriding server.listen (default :\(ListenAddress.defaultPort)).")
    var listen: String?

    func run() async throws {
        var config = try options.load()
        if let listen {
            guard let address = ListenAddress(listen) else {
                printError("--listen: expected HOST:PORT with a port from 1 to 65535, got \"\(listen)\"")
                throw ExitCode(ConfigOptions.invalidConfigExitCode)
            }
            config.server.listen = address
        }
        let logger = makeLogger(config.logLevel)
        try await TelltaleApp(config: config, logger: logger).serve()
    }
}

struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config", abstract: "Validate a configuration file and exit: 0 when valid, 2 otherwise.")

    @Option(name: .long, help: "YAML configuration file.")
    var config: String

    func run() async throws {
        _ = try ConfigOptions(config: config).load()
        print("\(config): configuration is valid")
    }
}

struct Once: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every collector once, print the exposition, exit 1 if any collector failed.")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let config = try options.load()
        let (exposition, succeeded) = await TelltaleApp(config: config, logger: makeLogger(config.logLevel)).once()
        print(exposition, terminator: "")
        if !succeeded { throw ExitCode.failure }
    }
}

extension ConfigOptions {
    init(config: String) {
        self.init()
        self.config = config
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
