import TelltaleClients
import TelltaleCore
import Yams

extension RedisTLSSettings {
    /// The `tls` key of a `redis:` mapping, given what the rest of it says (`rediss://` asks
    /// for TLS with the defaults; a unix socket has no host name to verify):
    ///
    /// - absent: as the URL says;
    /// - `true`, or a mapping (`{}` for the defaults) of `ca_file`, `cert_file`, `key_file`,
    ///   `server_name`, `insecure_skip_verify`: TLS;
    /// - `false`: no TLS (a problem with `rediss://`).
    ///
    /// The files are read and checked here, so that `check-config` and startup report a
    /// missing or unusable one under its key (never its content).
    static func read(_ map: ConfigMap, for settings: RedisSettings) -> RedisTLSSettings? {
        let tls = readKey(map, for: settings)
        if let tls, case .unix = settings.endpoint, tls.serverName == nil, !tls.insecureSkipVerify {
            map.problems.add(map.childPath("tls"), "a unix socket has no host name to verify the certificate against: set tls.server_name")
        }
        return tls
    }

    private static func readKey(_ map: ConfigMap, for settings: RedisSettings) -> RedisTLSSettings? {
        let path = map.childPath("tls")
        guard let node = map.node("tls") else { return settings.tls }
        if case .scalar = node {
            guard let enabled = map.bool("tls") else { return settings.tls }
            if !enabled && settings.tls != nil {
                map.problems.add(path, "false, but the url is rediss://, which asks for TLS")
            }
            return enabled ? RedisTLSSettings() : nil
        }
        guard let block = ConfigMap(node, path: path, problems: map.problems) else { return settings.tls }
        return read(block)
    }

    /// A `tls:` mapping itself (also the Sentinels' `sentinel.tls`): its keys, then the files
    /// checked. Reports unknown keys (`finish()`).
    static func read(_ block: ConfigMap) -> RedisTLSSettings {
        var tls = RedisTLSSettings()
        tls.caFile = block.string("ca_file")
        tls.certFile = block.string("cert_file")
        tls.keyFile = block.string("key_file")
        if let name = block.string("server_name") {
            if name.isEmpty || name.utf8.count > 253 || name.contains(where: { $0 == " " || $0 == "/" || $0 == "\0" }) {
                block.problems.add(block.childPath("server_name"), "expected a host name or address, got \"\(name)\"")
            } else {
                tls.serverName = name
            }
        }
        tls.insecureSkipVerify = block.bool("insecure_skip_verify") ?? false
        tls.stamps = [tls.caFile, tls.certFile, tls.keyFile].compactMap { $0 }.map(FileStamp.init)
        block.finish()
        if tls.certFile != nil && tls.keyFile == nil {
            block.problems.add(block.childPath("key_file"), "is required with cert_file (the client certificate's key)")
        } else if tls.keyFile != nil && tls.certFile == nil {
            block.problems.add(block.childPath("cert_file"), "is required with key_file (the client certificate)")
        } else if case .failure(let problem) = RedisTLSContext.make(tls) {
            block.problems.add(problem.key.isEmpty ? block.path : block.childPath(problem.key), problem.reason)
        }
        return tls
    }
}
