import TelltaleCore

extension QueryTimeouts {
    /// Reads `statement_timeout` and `lock_timeout`: the same keys for every Postgres
    /// connection (targets and alerting).
    package mutating func read(_ map: ConfigMap) {
        if let statement = map.duration("statement_timeout") { self.statement = statement }
        if let lock = map.duration("lock_timeout") { self.lock = lock }
    }
}
