import TelltaleClients
import TelltaleCore

extension RedisSettings {
    /// A source's `redis:` block: `url`, or `host`/`port`/`socket`, credentials, timeouts, `tls`.
    static func read(_ map: ConfigMap) -> RedisSettings {
        var settings = RedisSettings()
        if let url = map.secret("url") {
            if let parsed = RedisSettings.parse(url: url) {
                settings = parsed
            } else {
                // The URL may hold a password: the problem names the key only.
                map.problems.add(map.childPath("url"), "expected redis://[user[:password]@]host[:port][/db], rediss://… or unix:///path")
            }
        }
        if let host = map.string("host") {
            settings.endpoint = .tcp(host: host, port: map.int("port", in: 1...65535) ?? 6379)
        } else if map.has("port") {
            map.problems.add(map.childPath("port"), "needs host")
        }
        if let socket = map.string("socket") { settings.endpoint = .unix(path: socket) }
        if let username = map.string("username") { settings.username = username }
        if let password = map.secret("password") { settings.password = password }
        if let database = map.int("db", in: RedisSettings.databases) { settings.database = database }
        if let timeout = map.duration("connect_timeout") { settings.connectTimeout = timeout }
        if let timeout = map.duration("command_timeout") { settings.commandTimeout = timeout }
        settings.tls = RedisTLSSettings.read(map, for: settings)
        if let sentinel = RedisSentinelSettings.read(map) { settings.topology = .sentinel(sentinel) }
        settings.readCluster(map)
        return settings
    }
}
