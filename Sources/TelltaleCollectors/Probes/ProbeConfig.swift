import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// An HTTP probe of one of the app's own endpoints.
public struct ProbeConfig: Sendable, Equatable {
    public var name: String
    public var request: OutboundRequest
    public var schedule = Schedule(interval: .seconds(15), timeout: .seconds(5))
    /// Accepted status codes; empty means any 2xx.
    public var expectedStatus: [Int] = []
    public var expectedBody: String?
    /// Window of `telltale_probe_error_ratio`.
    public var errorWindow = Duration.seconds(300)
    public var buckets = Buckets.defaultSeconds

    package static func read(_ map: ConfigMap) -> ProbeConfig? {
        let name = map.string("name") ?? ""
        if name.isEmpty { map.problems.add(map.childPath("name"), "is required") }
        var probe = ProbeConfig(name: name, request: OutboundRequest(url: map.string("url") ?? ""))
        if probe.request.url.isEmpty { map.problems.add(map.childPath("url"), "is required") }
        probe.schedule.read(map)
        probe.request.totalTimeout = probe.schedule.requestTimeout
        probe.request.method = (map.string("method") ?? "GET").uppercased()
        probe.request.caFile = map.string("ca_file")
        probe.request.reusesConnection = false  // a probe sees the endpoint as a new client would
        if let headers = map.map("headers") {
            for name in headers.secretKeys {
                if let value = headers.secret(name) { probe.request.headers.append("\(name): \(value)") }
            }
            headers.finish()
        }
        if let codes = map.stringList("expect_status") {
            probe.expectedStatus = codes.compactMap { Int($0) }
            if probe.expectedStatus.count != codes.count { map.problems.add(map.childPath("expect_status"), "expected status codes") }
        }
        probe.expectedBody = map.string("expect_body")
        // Every body holds the empty string: an expectation that cannot fail is a mistake
        // (often a variable that expanded to nothing), not a probe that always passes.
        if probe.expectedBody?.isEmpty == true { map.problems.add(map.childPath("expect_body"), "must not be empty") }
        if let window = map.duration("error_window") { probe.errorWindow = window }
        map.finish()
        return probe
    }
}

/// `probes`: HTTP probes of the app's endpoints, one collector each.
public struct ProbeList: SourceSettings {
    public var probes: [ProbeConfig] = []

    static let registration = SourceRegistration { sections in
        ProbeList(probes: sections.namedList("probes", item: ProbeConfig.read, name: \.name))
    }

    public func collectors(_ shared: SharedClients) -> [any Collector] {
        probes.map { ProbeCollector(config: $0, http: shared.http) }
    }
}
