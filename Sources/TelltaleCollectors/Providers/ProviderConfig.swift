import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// Where a balance is in a provider's JSON response.
public struct BalanceRule: Sendable, Equatable {
    /// Selects the balance objects; `{currency}` steps bind the currency from object keys.
    var path: JSONPath
    /// The amount, relative to each selected object (empty: the object itself).
    var value: JSONPath
    var pending: JSONPath?
    /// A field of each selected object that names the currency.
    var currencyField: JSONPath?
}

/// A balance provider: a preset (nowpayments, kinguin) or a generic JSON API.
public struct ProviderConfig: Sendable, Equatable {
    public var name: String
    public var request: OutboundRequest
    public var rules: [BalanceRule]
    /// Currency when neither the path nor a field names it (Kinguin's single balance).
    public var currency: String?
    public var staticLabels: Labels = .none
    public var schedule = Schedule(interval: .seconds(60), timeout: .seconds(15))
    /// Every secret of this provider (API key, header values), scrubbed from any message.
    public var secrets: [String] = []
    /// Balances (currencies) exported at most; a response may list any number of them.
    public var maxSeries = 1000
    /// A `json` provider's own families (`metrics:`), read from the same response.
    public var metrics: [JSONMetricRule] = []

    static let presets: [String: (path: String, header: String, rule: BalanceRule, currency: String?)] = [
        // NOWPayments: {"btc": {"amount": 0.1, "pendingAmount": 0}, …}
        "nowpayments": ("/v1/balance", "x-api-key",
                        BalanceRule(path: JSONPath("{currency}")!, value: JSONPath("amount")!,
                                    pending: JSONPath("pendingAmount")!, currencyField: nil), nil),
        // Kinguin: {"balance": 123.45}, in the account's currency.
        "kinguin": ("/esa/api/v1/balance", "X-Api-Key",
                    BalanceRule(path: JSONPath("")!, value: JSONPath("balance")!, pending: nil, currencyField: nil), "EUR"),
    ]
    static let defaultBaseURLs = ["nowpayments": "https://api.nowpayments.io", "kinguin": "https://gateway.kinguin.net"]

    package static func read(_ map: ConfigMap) -> ProviderConfig? {
        let name = map.string("name") ?? ""
        if name.isEmpty { map.problems.add(map.childPath("name"), "is required") }
        let type = map.string("type") ?? "json"
        var config = ProviderConfig(name: name, request: OutboundRequest(url: ""), rules: [])
        config.schedule.read(map)
        config.request.totalTimeout = config.schedule.requestTimeout
        if let timeout = map.duration("connect_timeout") { config.request.connectTimeout = timeout }
        if let cap = map.int("max_body_bytes", in: 1024...(256 << 20)) { config.request.maxBodyBytes = cap }
        config.request.caFile = map.string("ca_file")
        config.currency = map.string("currency")
        if let cap = map.int("max_series", in: 1...100_000) { config.maxSeries = cap }
        if let labels = map.map("labels") {
            config.staticLabels = readStaticLabels(labels)
            labels.finish()
        }
        if let preset = presets[type] {
            config.readPreset(map, type: type, preset)
        } else if type == "json" {
            config.readJSON(map)
        } else {
            map.problems.add(map.childPath("type"), "expected nowpayments, kinguin or json, got \"\(type)\"")
        }
        map.finish()
        return config
    }

    private mutating func readPreset(_ map: ConfigMap, type: String,
                                     _ preset: (path: String, header: String, rule: BalanceRule, currency: String?)) {
        let base = map.string("base_url") ?? Self.defaultBaseURLs[type] ?? ""
        request.url = base.trimmingSuffix("/") + preset.path
        if let key = map.secret("api_key") {
            request.headers = ["\(preset.header): \(key)"]
            secrets.append(key)
        } else if !map.has("api_key") && !map.has("api_key_file") {
            map.problems.add(map.childPath("api_key"), "is required (or api_key_file)")
        }
        rules = [preset.rule]
        currency = currency ?? preset.currency
    }

    private mutating func readJSON(_ map: ConfigMap) {
        request.url = map.string("url") ?? ""
        if request.url.isEmpty { map.problems.add(map.childPath("url"), "is required") }
        request.method = (map.string("method") ?? "GET").uppercased()
        if let body = map.string("body") { request.body = Array(body.utf8) }
        if let headers = map.map("headers") {
            for name in headers.secretKeys {
                // Header values often carry credentials: all are treated as secrets.
                if let value = headers.secret(name) {
                    request.headers.append("\(name): \(value)")
                    secrets.append(value)
                }
            }
            headers.finish()
        }
        for (path, node) in map.list("balances") ?? [] {
            guard let item = ConfigMap(node, path: path, problems: map.problems) else { continue }
            if let rule = Self.readRule(item) { rules.append(rule) }
            item.finish()
        }
        readMetrics(map)
        if rules.isEmpty && metrics.isEmpty {
            map.problems.add(map.childPath("balances"), "list at least one balance rule or metric (metrics:)")
        }
    }

    /// `metrics:`; names must differ as exposed (a counter `x` is `x_total`, an info `x` is `x_info`).
    private mutating func readMetrics(_ map: ConfigMap) {
        let reserved = Set(["provider"] + staticLabels.labels.map(\.name))
        var exposed: Set<String> = []
        for (path, node) in map.list("metrics") ?? [] {
            guard let item = ConfigMap(node, path: path, problems: map.problems),
                  let rule = JSONMetricRule.read(item, reserved: reserved) else { continue }
            let names = [rule.descriptor.name, rule.exposedName]
            if names.contains(where: exposed.contains) {
                map.problems.add(item.childPath("name"), "\"\(rule.descriptor.name)\" clashes with another metric of this provider")
                continue
            }
            exposed.formUnion(names)
            metrics.append(rule)
        }
    }

    private static func readRule(_ map: ConfigMap) -> BalanceRule? {
        func path(_ key: String) -> JSONPath? {
            guard let text = map.string(key) else { return nil }
            guard let parsed = JSONPath(text) else {
                map.problems.add(map.childPath(key), "not a valid path (a.b, a[0], a[*], a.*, {label})")
                return nil
            }
            return parsed
        }
        guard let selection = path("path") else {
            if !map.has("path") { map.problems.add(map.childPath("path"), "is required") }
            return nil
        }
        for label in selection.boundLabels where !MetricNames.isValidLabelName(label) {
            map.problems.add(map.childPath("path"), "\"\(label)\" is not a valid label name")
        }
        return BalanceRule(path: selection, value: path("value") ?? JSONPath("")!, pending: path("pending"),
                           currencyField: path("currency_field"))
    }

    private static func readStaticLabels(_ map: ConfigMap) -> Labels {
        var pairs: [(String, String)] = []
        for name in map.keys {
            guard MetricNames.isValidLabelName(name), !["provider", "currency"].contains(name) else {
                map.problems.add(map.childPath(name), "not a usable label name")
                _ = map.node(name)
                continue
            }
            if let value = map.string(name) { pairs.append((name, value)) }
        }
        return Labels(pairs)
    }
}

extension Schedule {
    /// A request's own timeout, a little inside the run's: the collector then reports the
    /// timeout itself (keeping its last good values, marked stale) before the runner gives up
    /// on the run and drops its series.
    var requestTimeout: Duration {
        max(timeout * 0.8, timeout - .seconds(1))
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        var text = self
        while text.hasSuffix(suffix) { text.removeLast(suffix.count) }
        return text
    }
}

/// `providers`: balance endpoints, one collector each.
public struct ProviderList: SourceSettings {
    public var providers: [ProviderConfig] = []

    static let registration = SourceRegistration { sections in
        ProviderList(providers: sections.namedList("providers", item: ProviderConfig.read, name: \.name))
    }

    public func collectors(_ shared: SharedClients) -> [any Collector] {
        providers.map { ProviderCollector(config: $0, http: shared.http) }
    }
}
