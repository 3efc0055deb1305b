import Testing
@testable import Telltale
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore
@testable import TelltaleMetrics

/// Several `queues:` sources, and what each reads of the Redis itself.
@Suite struct QueueSourcesTests {
    @Test func aMappingIsTheSourceDefaultAndAListNamesEach() throws {
        let single = try TelltaleConfig.parse("queues: {redis: {url: redis://h:6380}, queues: [emails]}")
        let one = try #require(single.source(QueueSources.self)?.sources)
        #expect(one.map(\.name) == ["default"])
        #expect(one[0].queues.first?.labels == ["queue": "emails", "prefix": "bull", "redis": "default"])

        let listed = try TelltaleConfig.parse("""
            queues:
              - {name: main, redis: {url: "redis://a:6379"}, prefixes: [bull]}
              - {name: other.env-2, redis: {url: "redis://b:6379"}, queues: [sms], discovery: {enabled: false}}
            """)
        let sources = try #require(listed.source(QueueSources.self)?.sources)
        #expect(sources.map(\.name) == ["main", "other.env-2"])
        #expect(sources[1].queues.first?.labels["redis"] == "other.env-2")
        let collectors = sources.map { QueueCollector(config: $0, client: ScriptedRedis()) }
        #expect(collectors.map(\.name) == ["queues:main", "queues:other.env-2"])
    }

    @Test func namesAreRequiredUniqueAndLabelSafe() {
        for (yaml, problem) in [
            ("queues: [{redis: {url: \"redis://a\"}}]", "queues[0].name"),
            ("queues: [{name: \"a b\", redis: {url: \"redis://a\"}}]", "queues[0].name"),
            ("queues: [{name: a, redis: {url: \"redis://a\"}}, {name: a, redis: {url: \"redis://b\"}}]", "queues: names must be unique"),
        ] {
            #expect(throws: ConfigErrors.self) { try TelltaleConfig.parse(yaml) }
            do {
                _ = try TelltaleConfig.parse(yaml)
            } catch {
                #expect(error.problems.contains { $0.contains(problem) }, "\(error.problems)")
            }
        }
    }

    @Test func infoBecomesTheRedisFamilies() async throws {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n# Clients\r\nconnected_clients:12\r\n"
            + "# Memory\r\nused_memory:900\r\nmaxmemory:1000\r\nmaxmemory_policy:allkeys-lru\r\n"
            + "# Stats\r\nrejected_connections:3\r\nevicted_keys:nan\r\n# Replication\r\nrole:master\r\n"
        let redis = ScriptedRedis { command in
            command.first == "INFO" ? "$\(info.utf8.count)\r\n\(info)\r\n" : nil
        }
        let result = try await QueueCollector(config: .listing(["emails"]), client: redis).collect()
        let node: Labels = ["redis": "default", "node": "fake:6379"]
        #expect(result.value("telltale_redis_up", ["redis": "default"]) == 1)
        #expect(result.series("telltale_redis_info")?.labels == node.adding("version", "7.0.15").adding("role", "master")
            .adding("maxmemory_policy", "allkeys-lru"))
        #expect(result.value("telltale_redis_memory_used_bytes", node) == 900)
        #expect(result.value("telltale_redis_memory_max_bytes", node) == 1000)
        #expect(result.value("telltale_redis_memory_used_ratio", node) == 0.9)
        #expect(result.value("telltale_redis_connected_clients", node) == 12)
        #expect(result.value("telltale_redis_rejected_connections", node) == 3)
        // Not a number: absent, never 0.
        #expect(result.family("telltale_redis_evicted_keys")?.series.isEmpty == true)
        #expect(result.value("telltale_queue_jobs", ["queue": "emails", "redis": "default", "state": "waiting"]) == 2)
    }

    @Test func noLimitMeansNoRatioAndARefusedInfoMeansNoFamilies() async throws {
        let unlimited = RedisInfo("used_memory:5\r\nmaxmemory:0\r\n")
        #expect(unlimited.usedMemory == 5 && unlimited.maxmemory == 0)
        var families = RedisInfoFamilies()
        families.add(.string("used_memory:5\r\nmaxmemory:0\r\n"), source: "s", node: "n")
        families.add(.error("NOPERM this user has no permissions to run the 'info' command"), source: "s", node: "m")
        let built = families.build()
        #expect(built.first { $0.name == "telltale_redis_memory_used_ratio" }?.series.isEmpty == true)
        #expect(built.first { $0.name == "telltale_redis_memory_used_bytes" }?.series.map(\.labels) == [["redis": "s", "node": "n"]])
    }

    @Test func aFailedRunDownsTheSource() async throws {
        let redis = ScriptedRedis()
        redis.isDown.value = true
        let collector = QueueCollector(config: .listing(["emails"]), client: redis)
        await #expect(throws: CollectionProblem.self) { try await collector.collect() }
        let failed = CollectionResult(families: collector.familiesWhenFailed())
        #expect(failed.value("telltale_redis_up", ["redis": "default"]) == 0)
    }

    @Test func aRefusedScanLeavesRedisUp() async throws {
        let redis = ScriptedRedis { command in
            command.first == "SCAN" ? "-NOPERM this user has no permissions to run the 'scan' command\r\n" : nil
        }
        let collector = QueueCollector(config: QueueCollectorConfig(), client: redis)
        await #expect(throws: CollectionProblem.self) { try await collector.collect() }
        let failed = CollectionResult(families: collector.familiesWhenFailed())
        #expect(failed.value("telltale_redis_up", ["redis": "default"]) == 1)
    }
}
