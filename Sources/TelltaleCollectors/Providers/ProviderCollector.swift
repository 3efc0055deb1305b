import Synchronization
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// One balance provider, polled on its own (slow) schedule. The last good balances (and
/// `metrics:` series) stay exported when a fetch fails, marked stale, so a flaky API does not
/// blank a dashboard.
public final class ProviderCollector: Collector {
    static let balance = MetricDescriptor("telltale_provider_balance", .gauge, help: "Available balance, by currency.")
    static let pending = MetricDescriptor(
        "telltale_provider_pending_balance", .gauge, help: "Pending (not yet available) balance, by currency.")
    static let up = MetricDescriptor("telltale_provider_up", .gauge, help: "Whether the last fetch of the provider succeeded.")
    static let stale = MetricDescriptor(
        "telltale_provider_stale", .gauge, help: "1 when the exported balances come from an earlier fetch because the last failed.")
    static let duration = MetricDescriptor(
        "telltale_provider_request_duration_seconds", .histogram, help: "Duration of requests to the provider.", unit: "seconds")
    static let lastSuccess = MetricDescriptor(
        "telltale_provider_last_success_timestamp_seconds", .gauge, help: "Unix time of the last successful fetch.", unit: "seconds")
    static let errors = MetricDescriptor(
        "telltale_provider_errors", .counter,
        help: "Failed fetches by reason: timeout, connect, tls, too_large, redirect, http_4xx, http_5xx, rate_limited, bad_json, missing_field, bad_value.")
    /// How long to back off after a 429 without a usable Retry-After.
    static let defaultRetryAfter = Duration.seconds(60)

    public let name: String
    public let schedule: Schedule
    let config: ProviderConfig
    let http: any HTTPSending
    private let redactor: Redactor

    /// What one good response holds: balances and the `metrics:` families.
    private struct Extracted {
        var balances: [(Labels, Double)] = []
        var pendings: [(Labels, Double)] = []
        var metrics: [FamilyBuilder] = []
        /// Series over each metric's cap, by metric name.
        var dropped: [String: Int] = [:]
        /// Series left out (bad values, missing fields, duplicates): the fetch itself succeeded.
        var problems = ProblemTally()
    }

    private struct State {
        var balances: [(Labels, Double)] = []
        var pendings: [(Labels, Double)] = []
        var metrics: [FamilyBuilder]
        var lastSuccess: Double?
        var succeededLast = false
        var retryAt: ContinuousClock.Instant?
        /// Series over the caps, by metric name (`telltale_provider_balance` for balances).
        var dropped: [String: Double]
        var duration: FamilyBuilder
        var errors: FamilyBuilder
    }

    private let state: Mutex<State>

    public var settings: CollectorSettings { CollectorSettings(config) }

    package init(config: ProviderConfig, http: any HTTPSending) {
        self.name = "provider:\(config.name)"
        self.schedule = config.schedule
        self.config = config
        self.http = http
        redactor = Redactor(config.secrets)
        let names = [Self.balance.name] + config.metrics.map(\.descriptor.name)
        state = Mutex(State(metrics: config.metrics.map { FamilyBuilder($0.descriptor) },
                            dropped: Dictionary(uniqueKeysWithValues: names.map { ($0, 0) }),
                            duration: FamilyBuilder(Self.duration, buckets: Buckets.defaultSeconds),
                            errors: FamilyBuilder(Self.errors)))
    }

    public func collect() async throws -> CollectionResult {
        if let retryAt = state.withLock({ $0.retryAt }), ContinuousClock.now < retryAt {
            // Rate limited: asking again before Retry-After would only prolong it.
            return CollectionResult(families: families())
        }
        let clock = ContinuousClock()
        let started = clock.now
        let outcome: Result<Extracted, CollectionProblem>
        do {
            let response = try await http.send(config.request)
            outcome = extract(response)
        } catch {
            outcome = .failure(CollectionProblem(reason: error.kind == .other ? "connect" : error.kind.rawValue, redact(error.message)))
        }
        let elapsed = (clock.now - started).seconds
        let providerLabels: Labels = ["provider": config.name]
        state.withLock { state in
            state.duration.observe(elapsed, providerLabels)
            switch outcome {
            case .success(let values):
                let kept = min(values.balances.count, config.maxSeries)
                state.dropped[Self.balance.name, default: 0] += Double(values.balances.count - kept)
                state.balances = Array(values.balances.prefix(kept))
                state.pendings = Array(values.pendings.prefix(kept))
                state.metrics = values.metrics
                for (metric, count) in values.dropped { state.dropped[metric, default: 0] += Double(count) }
                state.lastSuccess = UnixTime.now.seconds
                state.succeededLast = true
                state.retryAt = nil
            case .failure(let problem):
                state.succeededLast = false
                state.errors.add(1, providerLabels.adding("reason", problem.reason))
            }
        }
        switch outcome {
        case .success(let values): return CollectionResult(families: families(), problems: values.problems.list)
        case .failure(let problem): return CollectionResult(families: families(), problems: [problem])
        }
    }

    /// Turns a response into balances and metrics, or the reason it cannot be trusted.
    private func extract(_ response: OutboundResponse) -> Result<Extracted, CollectionProblem> {
        switch response.status {
        case 200..<300:
            break
        case 429:
            let wait = RetryAfter.parse(response) ?? Self.defaultRetryAfter
            state.withLock { $0.retryAt = .now + wait }
            return .failure(CollectionProblem(reason: "rate_limited", "HTTP 429, retrying after \(wait)"))
        case 300..<400:
            // Followed only within the same origin: the API keys must not go elsewhere.
            return .failure(CollectionProblem(reason: "redirect", "HTTP \(response.status): redirect not followed (to another origin, or more than 3)"))
        default:
            let reason = response.status >= 500 ? "http_5xx" : "http_4xx"
            return .failure(CollectionProblem(reason: reason, "HTTP \(response.status)\(errorDetail(response.body))"))
        }
        guard let document = JSONValue.parse(response.body) else {
            return .failure(CollectionProblem(reason: "bad_json", "the response is not JSON (\(response.body.count) bytes)"))
        }
        var extracted = Extracted()
        if let problem = extractBalances(document, into: &extracted) { return .failure(problem) }
        // Every series of a metric carries `provider` and the provider's labels, as balances do.
        let base = Labels([("provider", config.name)]).merging(config.staticLabels)
        for rule in config.metrics {
            let (family, dropped) = rule.build(document, base: base, problems: &extracted.problems)
            extracted.metrics.append(family)
            extracted.dropped[rule.descriptor.name] = dropped
        }
        return .success(extracted)
    }

    /// Adds the balances of every rule, or returns why they cannot be trusted.
    private func extractBalances(_ document: JSONValue, into extracted: inout Extracted) -> CollectionProblem? {
        for rule in config.rules {
            let selected = rule.path.select(document)
            guard !selected.isEmpty else {
                return CollectionProblem(reason: "missing_field", "nothing at the balance path")
            }
            for (bound, node) in selected {
                var pairs = bound
                if let field = rule.currencyField {
                    guard let currency = field.select(node).first?.node.labelText else {
                        return CollectionProblem(reason: "missing_field", "no currency field in a balance")
                    }
                    pairs.append(("currency", currency))
                } else if !pairs.contains(where: { $0.0 == "currency" }) {
                    pairs.append(("currency", config.currency ?? ""))
                }
                let labels = config.staticLabels.merging(Labels(pairs + [("provider", config.name)]))
                switch Self.amount(rule.value, in: node) {
                case .success(let value): extracted.balances.append((labels, value))
                case .failure(let problem): return problem
                }
                if let pending = rule.pending {
                    switch Self.amount(pending, in: node) {
                    case .success(let value): extracted.pendings.append((labels, value))
                    case .failure(let problem): return problem
                    }
                }
            }
        }
        return nil
    }

    private static func amount(_ path: JSONPath, in node: JSONValue) -> Result<Double, CollectionProblem> {
        guard let found = path.select(node).first?.node else {
            return .failure(CollectionProblem(reason: "missing_field", "a balance has no amount field"))
        }
        guard let value = found.number else {
            return .failure(CollectionProblem(reason: "bad_value", "an amount is not a number"))
        }
        return .success(value)
    }

    /// The `message` or `code` of a JSON error body, short and with secrets removed.
    private func errorDetail(_ body: [UInt8]) -> String {
        guard case .object(let members) = JSONValue.parse(body),
              let text = (members["message"] ?? members["error"] ?? members["code"])?.labelText else { return "" }
        return ": " + redactor.redact(text, clippedTo: 120)
    }

    private func redact(_ message: String) -> String {
        redactor.redact(message, clippedTo: CollectionProblem.maxMessageLength)
    }

    /// After a run the runner gave up on: the last good balances, marked stale, and up 0.
    public func familiesWhenFailed() -> [MetricFamily] {
        state.withLock { $0.succeededLast = false }
        return families()
    }

    private func families() -> [MetricFamily] {
        state.withLock { state in
            let providerLabels: Labels = ["provider": config.name]
            var balance = FamilyBuilder(Self.balance)
            for (labels, value) in state.balances { balance.set(value, labels) }
            var pending = FamilyBuilder(Self.pending)
            for (labels, value) in state.pendings { pending.set(value, labels) }
            var up = FamilyBuilder(Self.up)
            up.set(state.succeededLast ? 1 : 0, providerLabels)
            var stale = FamilyBuilder(Self.stale)
            let hasValues = !state.balances.isEmpty || state.metrics.contains { !$0.isEmpty }
            stale.set(!state.succeededLast && hasValues ? 1 : 0, providerLabels)
            var lastSuccess = FamilyBuilder(Self.lastSuccess)
            if let time = state.lastSuccess { lastSuccess.set(time, providerLabels) }
            var dropped = FamilyBuilder(CollectorHealth.seriesDropped)
            for (metric, count) in state.dropped { dropped.set(count, ["collector": name, "metric": metric]) }
            state.duration.touchHistogram(providerLabels)
            return ([balance, pending, up, stale, lastSuccess, state.duration, state.errors, dropped] + state.metrics).map { $0.build() }
        }
    }
}
