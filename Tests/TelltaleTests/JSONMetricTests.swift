import TelltaleMetrics
import Testing
@testable import Telltale
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore

/// Filters in the path language and the `metrics:` of a `json` provider.
@Suite struct JSONMetricTests {
    static let services = #"""
        {"services": [
          {"name": "api", "state": "ACTIVE", "health": "UP", "load": 0.5, "workers": 4, "region": "eu", "primary": true},
          {"name": "db", "state": "ACTIVE", "health": "DOWN", "load": "1.25", "workers": 2, "region": "us", "primary": false},
          {"name": "old", "state": "RETIRED", "health": "UNKNOWN", "load": null, "workers": 0, "region": null}
        ],
        "queues": {"mail": {"depth": 3}, "sms": {"depth": 7}}}
        """#

    static var document: JSONValue { JSONValue.parse(Array(services.utf8))! }

    static func names(_ path: String) -> [String] {
        JSONPath(path)!.select(document).compactMap { JSONPath("name")!.select($0.node).first?.node.labelText }
    }

    @Test(arguments: [
        (#"services[?(@.state == "ACTIVE")]"#, ["api", "db"]),
        (#"services[?(@.state != 'ACTIVE')]"#, ["old"]),
        ("services[?(@.workers > 2)]", ["api"]),
        ("services[?(@.workers >= 2)]", ["api", "db"]),
        ("services[?(@.workers < 2)]", ["old"]),
        ("services[?(@.workers <= 0)]", ["old"]),
        ("services[?(@.load > 1)]", ["db"]),          // numeric strings order as numbers
        ("services[?(@.workers == 4)]", ["api"]),
        ("services[?(@.primary == true)]", ["api"]),
        ("services[?(@.primary != true)]", ["db", "old"]),  // a missing field equals nothing
        ("services[?(@.region == null)]", ["old"]),
        (#"services[?(@.load == "1.25")]"#, ["db"]),   // equality keeps JSON types apart
        ("services[?(@.load == 1.25)]", []),
        (#"services[?(@['name'] == "a)]b")]"#, []),   // `)]` inside a literal does not close the filter
    ])
    func filtersSelectMatchingElements(path: String, expected: [String]) {
        #expect(Self.names(path) == expected)
    }

    @Test func filtersApplyToObjectValuesAndToTheElementItself() throws {
        let depths = try #require(JSONPath("queues[?(@.depth > 5)].depth")).select(Self.document)
        #expect(depths.map(\.node.number) == [7])
        let strings = JSONValue.parse(Array(#"["a", "b", "a"]"#.utf8))!
        #expect(try #require(JSONPath(#"[?(@ == "a")]"#)).select(strings).count == 2)
    }

    @Test(arguments: [
        "services[?(@.state == ACTIVE)]",      // a bare word is no literal
        "services[?(@.state = 'x')]",
        "services[?(@.state < 'x')]",          // ordering needs a number
        "services[?(state == 1)]",             // the left side starts with @
        "services[?(@.a[*] == 1)]",            // and selects one node
        "services[?(@.a[?(@.b == 1)] == 1)]",  // filters do not nest
        "services[?(@.a == 1)",
        "services[?(@.a == 'x)]",
        "services[?(@.a == inf)]",
        String(repeating: "a.", count: 40),
        String(repeating: "x", count: 1001),
    ])
    func malformedPathsAreRejected(path: String) {
        #expect(JSONPath(path) == nil)
    }

    // MARK: - The metric builder

    static func rule(_ yaml: String) throws -> JSONMetricRule {
        let config = try TelltaleConfig.parse("""
            providers:
              - name: acme
                url: http://127.0.0.1:1/
                labels: {region: eu}
                metrics:
                  - \(yaml)
            """)
        return try #require(config.source(ProviderList.self)?.providers.first?.metrics.first)
    }

    static func build(_ rule: JSONMetricRule, _ json: String = services) -> (MetricFamily, Int, [CollectionProblem]) {
        var problems = ProblemTally()
        let (family, dropped) = rule.build(JSONValue.parse(Array(json.utf8))!, base: ["provider": "acme"], problems: &problems)
        return (family.build(), dropped, problems.list)
    }

    static func value(_ family: MetricFamily, _ labels: Labels) -> Double? {
        guard case .number(let value) = family.series.first(where: { $0.labels == labels })?.value else { return nil }
        return value
    }

    @Test func valueMapFilterAndPathLabels() throws {
        let rule = try Self.rule(#"""
            {name: acme_service_up, path: 'services[?(@.state == "ACTIVE")]', value: health,
             value_map: {UP: 1, DOWN: 0}, labels: {service: name}, static_labels: {team: core}}
            """#)
        let (family, dropped, problems) = Self.build(rule)
        #expect(family.series.count == 2)
        #expect(Self.value(family, ["provider": "acme", "service": "api", "team": "core"]) == 1)
        #expect(Self.value(family, ["provider": "acme", "service": "db", "team": "core"]) == 0)
        #expect(dropped == 0 && problems.isEmpty)
    }

    @Test func aStringOutsideTheValueMapIsABadValueNotZero() throws {
        let rule = try Self.rule("{name: acme_health, path: 'services[*]', value: health, value_map: {UP: 1, DOWN: 0}, labels: {service: name}}")
        let (family, _, problems) = Self.build(rule)
        #expect(family.series.count == 2)
        #expect(!family.series.contains { $0.labels["service"] == "old" })
        #expect(problems.map(\.reason) == ["bad_value"])
    }

    @Test func numbersNumericStringsAndBadValues() throws {
        let rule = try Self.rule("{name: acme_load, path: 'services[*]', value: load, labels: {service: name}}")
        let (family, _, problems) = Self.build(rule)
        #expect(Self.value(family, ["provider": "acme", "service": "api"]) == 0.5)
        #expect(Self.value(family, ["provider": "acme", "service": "db"]) == 1.25)
        #expect(family.series.count == 2)  // `old` has a null load: absent, counted
        #expect(problems.map(\.reason) == ["bad_value"])
    }

    @Test func keyLabelsAndACounter() throws {
        let rule = try Self.rule("{name: acme_queue_depth, type: counter, help: Depth., path: 'queues.{queue}', value: depth}")
        #expect(rule.exposedName == "acme_queue_depth_total")
        let (family, _, problems) = Self.build(rule)
        #expect(family.descriptor.type == .counter && family.descriptor.help == "Depth.")
        #expect(Self.value(family, ["provider": "acme", "queue": "mail"]) == 3)
        #expect(Self.value(family, ["provider": "acme", "queue": "sms"]) == 7)
        #expect(problems.isEmpty)
    }

    @Test func infoSeriesAreOneWithTheirLabels() throws {
        let rule = try Self.rule("{name: acme_service, type: info, path: 'services[*]', labels: {service: name, state: state}}")
        let (family, _, _) = Self.build(rule)
        #expect(family.descriptor.type == .info)
        #expect(Self.value(family, ["provider": "acme", "service": "old", "state": "RETIRED"]) == 1)
    }

    @Test func theCapKeepsTheFirstSeriesAndCountsTheRest() throws {
        let rule = try Self.rule("{name: acme_workers, path: 'services[*]', value: workers, labels: {service: name}, max_series: 2}")
        let (family, dropped, problems) = Self.build(rule)
        #expect(family.series.count == 2 && dropped == 1 && problems.isEmpty)
        #expect(Self.value(family, ["provider": "acme", "service": "api"]) == 4)
    }

    @Test func duplicateLabelSetsKeepTheFirst() throws {
        let rule = try Self.rule("{name: acme_workers, path: 'services[*]', value: workers, labels: {state: state}}")
        let (family, _, problems) = Self.build(rule)
        #expect(Self.value(family, ["provider": "acme", "state": "ACTIVE"]) == 4)
        #expect(family.series.count == 2)
        #expect(problems.map(\.reason) == ["duplicate_labels"])
    }

    @Test func aMissingLabelLeavesTheSeriesOut() throws {
        let rule = try Self.rule("{name: acme_workers, path: 'services[*]', value: workers, labels: {zone: zone}}")
        let (family, _, problems) = Self.build(rule)
        #expect(family.series.isEmpty)
        #expect(problems.map(\.reason) == ["missing_field"])
    }

    // MARK: - Configuration

    static func problems(_ yaml: String) -> [String] {
        do {
            _ = try TelltaleConfig.parse(yaml)
            return []
        } catch {
            return error.problems
        }
    }

    @Test func badMetricsAreNamedByKey() {
        let problems = Self.problems("""
            providers:
              - name: acme
                url: http://127.0.0.1:1/
                labels: {region: eu}
                metrics:
                  - {name: 9bad, path: a}
                  - {name: telltale_mine, path: a}
                  - {name: x_total, type: counter, path: a}
                  - {name: x, type: histogram, path: a}
                  - {name: y, path: 'a[?(@.b === 1)]'}
                  - {name: z, path: a, labels: {__x: b, region: c}}
                  - {name: w, path: '{provider}'}
                  - {name: v, type: info, path: a, value: b}
                  - {name: u, path: a, max_series: 100001}
                  - {name: t, path: a, value_map: {UP: high}}
                  - {name: s}
                  - {name: dup, type: counter, path: a}
                  - {name: dup_total, path: a}
            """)
        for expected in [
            "providers[0].metrics[0].name: invalid metric name",
            "providers[0].metrics[1].name: the telltale_ prefix",
            "providers[0].metrics[2].name: metric name \"x_total\" must not end with _total",
            "providers[0].metrics[3].type: expected gauge, counter or info",
            "providers[0].metrics[4].path: not a valid path",
            "providers[0].metrics[5].labels.__x: \"__x\" is not a valid label name",
            "providers[0].metrics[5].labels.region: label \"region\" is already set",
            "providers[0].metrics[6].path: label \"provider\" is already set",
            "providers[0].metrics[7].value: an info metric's value is always 1",
            "providers[0].metrics[8].max_series: expected a whole number from 1 to 100000",
            "providers[0].metrics[9].value_map.UP: expected a number",
            "providers[0].metrics[10].path: is required",
            "providers[0].metrics[12].name: \"dup_total\" clashes with another metric",
        ] {
            #expect(problems.contains { $0.hasPrefix(expected) }, "\(expected) in \(problems)")
        }
    }

    @Test func metricsAloneAreEnoughButNothingAtAllIsNot() {
        #expect(Self.problems("providers: [{name: a, url: 'http://127.0.0.1:1/', metrics: [{name: a_up, path: up}]}]").isEmpty)
        #expect(Self.problems("providers: [{name: a, url: 'http://127.0.0.1:1/'}]")
            == ["providers[0].balances: list at least one balance rule or metric (metrics:)"])
    }

    // MARK: - The collector

    /// Generic series are the last good ones, marked stale, while fetches fail.
    @Test func lastGoodSeriesStayWhileFetchesFail() async throws {
        let config = try #require(try TelltaleConfig.parse("""
            providers:
              - name: acme
                url: http://127.0.0.1:1/
                labels: {region: eu}
                metrics:
                  - {name: acme_workers, path: 'services[*]', value: workers, labels: {service: name}, max_series: 2}
            """).source(ProviderList.self)?.providers.first)
        let collector = ProviderCollector(config: config, http: ScriptedHTTP([
            .success(.with(200, body: Self.services)),
            .success(.with(503)),
        ]))
        let good = try await collector.collect()
        #expect(good.problems.isEmpty)
        #expect(good.value("acme_workers", ["provider": "acme", "region": "eu", "service": "db"]) == 2)
        #expect(good.value("telltale_series_dropped", ["metric": "acme_workers"]) == 1)
        #expect(good.value("telltale_series_dropped", ["metric": "telltale_provider_balance"]) == 0)
        let failed = try await collector.collect()
        #expect(failed.problems.map(\.reason) == ["http_5xx"])
        #expect(failed.value("acme_workers", ["service": "db"]) == 2)
        #expect(failed.value("telltale_provider_stale") == 1)
        #expect(failed.value("telltale_provider_up") == 0)
    }
}
