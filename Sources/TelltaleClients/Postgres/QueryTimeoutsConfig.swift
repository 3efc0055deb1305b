import TelltaleCore

extension QueryTimeouts {
    /// Reads `statement_timeout` and `lock_timeout`: the same keys for every Postgres
    /// connection (targets and alerting).
    package mutating func read(_ map: ConfigMap) {
        if let statement = map.duration("statement_timeout") { self.statement = statement }
        if let lock = map.duration("lock_timeout") { self.lock = lock }
    }
}

extension ConfigMap {
    /// `dsn` or `dsn_file`: the same keys, and checks, for every Postgres connection. Problems
    /// name the key only: the string may hold a password.
    package func postgresDSN(required: Bool) -> String? {
        let dsn = secret("dsn")
        // A key that is present but unusable (an unset ${VAR}, say) has reported its own problem.
        if required && !has("dsn") && !has("dsn_file") { problems.add(childPath("dsn"), "is required (or dsn_file)") }
        if let dsn, !DSNInfo(dsn).isValid { problems.add(childPath("dsn"), "not a valid libpq connection string or URL") }
        return dsn
    }
}
