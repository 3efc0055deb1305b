import Synchronization
import TelltaleClients
import TelltaleCore

/// The configuration of one source, as its section reads it: the collectors it enables.
public protocol SourceSettings: Sendable {
    /// The collectors to run, in the order `/` lists them; none when the source is off.
    func collectors(_ shared: SharedClients) -> [any Collector]
    /// What is valid but probably wrong: printed by `check-config` and logged at start.
    var warnings: [String] { get }
}

extension SourceSettings {
    public var warnings: [String] { [] }
}

/// Where a source's configuration lives and how it is read. Adding a source means a folder
/// with its config section, its collectors and one of these, plus a line in `all`.
package struct SourceRegistration: Sendable {
    /// Reads the source's section (defaults when absent), recording problems in `sections`.
    package let read: @Sendable (ConfigSections) -> any SourceSettings

    package init(read: @escaping @Sendable (ConfigSections) -> any SourceSettings) {
        self.read = read
    }

    /// Every source, in the order `/` lists their collectors.
    package static let all: [SourceRegistration] = [
        ProcessCollectorConfig.registration,
        HostCollectorConfig.registration,
        PostgresTargets.registration,
        QueueSources.registration,
        ProviderList.registration,
        ProbeList.registration,
    ]
}

/// The mappings a source's section may be in: the top level, or `collectors:` for the
/// sources of this machine (process, host).
package struct ConfigSections {
    package let root: ConfigMap
    package let collectors: ConfigMap?

    package init(root: ConfigMap, collectors: ConfigMap?) {
        self.root = root
        self.collectors = collectors
    }

    /// The items of a top-level list of mappings, each read by `item`; names must be unique.
    func namedList<Item>(_ key: String, item: (ConfigMap) -> Item?, name: (Item) -> String) -> [Item] {
        let items = root.list(key)?.compactMap { path, node in
            ConfigMap(node, path: path, problems: root.problems).flatMap(item)
        } ?? []
        if Set(items.map(name)).count != items.count { root.problems.add(key, "names must be unique") }
        return items
    }
}

/// Clients several sources share, made on first use: one outbound HTTP pool for every
/// provider and probe (`http_threads`), so a hanging endpoint holds one of its threads; one
/// connection per Postgres target for its collectors, also across reloads.
public final class SharedClients: Sendable {
    private let httpThreads: Int
    private let madeHTTP = Mutex<HTTPClient?>(nil)
    /// Weak: a target's connection closes once a reload has replaced all its collectors.
    private let postgresClients = Mutex<[PostgresConnectionKey: WeakPostgresClient]>([:])

    public init(httpThreads: Int) {
        self.httpThreads = httpThreads
    }

    /// The client of a Postgres target with these connection settings, new or still in use.
    func postgres(target: String, dsn: String, connectTimeout: Duration) -> PostgresClient {
        let key = PostgresConnectionKey(target: target, dsn: dsn, connectTimeout: connectTimeout)
        return postgresClients.withLock { clients in
            clients = clients.filter { $0.value.client != nil }
            if let existing = clients[key]?.client { return existing }
            let made = PostgresClient(target: target, dsn: dsn, connectTimeout: connectTimeout)
            clients[key] = WeakPostgresClient(client: made)
            return made
        }
    }

    var http: HTTPClient {
        madeHTTP.withLock { made in
            if let made { return made }
            let client = HTTPClient(threads: httpThreads)
            made = client
            return client
        }
    }
}

private struct PostgresConnectionKey: Hashable {
    let target: String
    let dsn: String
    let connectTimeout: Duration
}

private struct WeakPostgresClient: Sendable {
    weak var client: PostgresClient?
}
