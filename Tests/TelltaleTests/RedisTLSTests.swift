import Glibc
import Testing
import Yams
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore

/// `rediss://` URLs and the `tls:` block of a `redis:` mapping.
@Suite struct RedisTLSConfigTests {
    /// The settings a `redis:` mapping reads as, and the problems found (unknown keys included).
    private func read(_ yaml: String) throws -> (settings: RedisSettings, problems: [String]) {
        let problems = ConfigProblems()
        let node = try #require(try Yams.compose(yaml: yaml))
        let map = try #require(ConfigMap(node, path: "queues.redis", problems: problems))
        let settings = RedisSettings.read(map)
        map.finish()
        return (settings, problems.list)
    }

    /// A directory of PEM files for the tests, removed by `body`'s end.
    private func withFiles(_ body: (String) throws -> Void) throws {
        var template = Array("/tmp/tt-tls-test-XXXXXX".utf8CString)
        try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) } != nil)
        let directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer {
            for name in ["ca.pem", "empty.pem", "junk.pem"] { unlink("\(directory)/\(name)") }
            rmdir(directory)
        }
        try body(directory)
    }

    @Test func redissURLsTurnTLSOnWithTheDefaults() throws {
        let url = try #require(RedisSettings.parse(url: "rediss://user:pw@cache.example:6380/2"))
        #expect(url.endpoint == .tcp(host: "cache.example", port: 6380))
        #expect(url.username == "user" && url.password == "pw" && url.database == 2)
        #expect(url.tls == RedisTLSSettings())
        #expect(url.tls?.insecureSkipVerify == false && url.tls?.caFile == nil && url.tls?.serverName == nil)
        // The default port is Redis' own, as redis-py has it.
        #expect(RedisSettings.parse(url: "rediss://cache.example")?.endpoint == .tcp(host: "cache.example", port: 6379))
        #expect(RedisSettings.parse(url: "rediss://[::1]:6380")?.endpoint == .tcp(host: "::1", port: 6380))
        #expect(RedisSettings.parse(url: "redis://cache.example")?.tls == nil)
        #expect(RedisSettings.parse(url: "redisss://cache.example") == nil)
        #expect(RedisSettings.parse(url: "rediss:/cache.example") == nil)
    }

    @Test func noTLSKeyFollowsTheURL() throws {
        #expect(try read("url: rediss://h:6380").settings.tls == RedisTLSSettings())
        #expect(try read("url: redis://h:6380").settings.tls == nil)
        let plain = try read("host: h")
        #expect(plain.settings.tls == nil && plain.problems.isEmpty)
    }

    @Test func presenceTurnsTLSOn() throws {
        for yaml in ["{url: 'redis://h', tls: {}}", "{url: 'redis://h', tls: true}", "{host: h, tls: yes}"] {
            let (settings, problems) = try read(yaml)
            #expect(settings.tls == RedisTLSSettings(), "\(yaml)")
            #expect(problems.isEmpty, "\(yaml): \(problems)")
        }
        let off = try read("{url: 'redis://h', tls: false}")
        #expect(off.settings.tls == nil && off.problems.isEmpty)
        // `tls: ~` is as if absent.
        #expect(try read("{url: 'rediss://h', tls: ~}").settings.tls == RedisTLSSettings())
    }

    @Test func falseContradictsRediss() throws {
        let (_, problems) = try read("{url: 'rediss://h', tls: false}")
        #expect(problems.count == 1 && problems[0].hasPrefix("queues.redis.tls: false, but the url is rediss://"), "\(problems)")
        let junk = try read("{host: h, tls: maybe}")
        #expect(junk.problems.contains { $0.hasPrefix("queues.redis.tls: expected true or false") }, "\(junk.problems)")
        let list = try read("{host: h, tls: [a]}")
        #expect(list.problems.contains { $0.hasPrefix("queues.redis.tls: expected a mapping") }, "\(list.problems)")
    }

    @Test func theBlocksKeysAreRead() throws {
        let (settings, problems) = try read("""
            url: rediss://10.0.0.5:6380
            tls: {server_name: cache.example, insecure_skip_verify: true}
            """)
        #expect(problems.isEmpty, "\(problems)")
        var expected = RedisTLSSettings()
        expected.serverName = "cache.example"
        expected.insecureSkipVerify = true
        #expect(settings.tls == expected)
        #expect(settings.endpoint == .tcp(host: "10.0.0.5", port: 6380))
    }

    @Test func unknownKeysAndBadValuesAreProblems() throws {
        let (_, problems) = try read("""
            host: h
            tls: {ca_fil: /x, insecure_skip_verify: sometimes, server_name: "a b"}
            """)
        #expect(problems.contains("queues.redis.tls.ca_fil: unknown key"), "\(problems)")
        #expect(problems.contains { $0.hasPrefix("queues.redis.tls.insecure_skip_verify: expected true or false") }, "\(problems)")
        #expect(problems.contains { $0.hasPrefix("queues.redis.tls.server_name: expected a host name") }, "\(problems)")
    }

    @Test func aCertificateNeedsItsKeyAndTheOtherWayRound() throws {
        let certOnly = try read("{host: h, tls: {cert_file: /nonexistent/client.pem}}")
        #expect(certOnly.problems.contains { $0.hasPrefix("queues.redis.tls.key_file: is required with cert_file") },
                "\(certOnly.problems)")
        let keyOnly = try read("{host: h, tls: {key_file: /nonexistent/client.key}}")
        #expect(keyOnly.problems.contains { $0.hasPrefix("queues.redis.tls.cert_file: is required with key_file") },
                "\(keyOnly.problems)")
    }

    @Test func fileProblemsNameTheKeyNeverTheContent() throws {
        let missing = try read("{host: h, tls: {ca_file: /nonexistent/ca.pem}}")
        #expect(missing.problems.count == 1, "\(missing.problems)")
        #expect(missing.problems.first?.hasPrefix("queues.redis.tls.ca_file: cannot open /nonexistent/ca.pem") == true,
                "\(missing.problems)")
        try withFiles { directory in
            let secret = "not-a-certificate-but-a-secret-1234"
            let junk = "\(directory)/junk.pem"
            let empty = "\(directory)/empty.pem"
            #expect(write(junk, "-----BEGIN CERTIFICATE-----\n\(secret)\n-----END CERTIFICATE-----\n"))
            #expect(write(empty, "nothing here\n"))
            let bad = try read("{host: h, tls: {ca_file: \(junk)}}")
            #expect(bad.problems.count == 1 && bad.problems[0].hasPrefix("queues.redis.tls.ca_file: \(junk):"), "\(bad.problems)")
            let none = try read("{host: h, tls: {ca_file: \(empty)}}")
            #expect(none.problems == ["queues.redis.tls.ca_file: no PEM certificate in \(empty)"])
            let key = try read("{host: h, tls: {cert_file: \(empty), key_file: \(junk)}}")
            #expect(key.problems == ["queues.redis.tls.cert_file: no PEM certificate in \(empty)"], "\(key.problems)")
            // A directory or a FIFO is not a PEM file, and reading one must not block.
            let directoryProblem = try read("{host: h, tls: {ca_file: \(directory)}}")
            #expect(directoryProblem.problems == ["queues.redis.tls.ca_file: \(directory) is not a regular file"])
            for problem in bad.problems + none.problems + key.problems { #expect(!problem.contains(secret)) }
        }
    }

    @Test func aUnixSocketNeedsAServerNameToVerify() throws {
        let unverifiable = try read("{socket: /run/redis.sock, tls: {}}")
        #expect(unverifiable.problems.contains { $0.hasPrefix("queues.redis.tls: a unix socket has no host name") },
                "\(unverifiable.problems)")
        #expect(try read("{socket: /run/redis.sock, tls: {server_name: redis.local}}").problems.isEmpty)
        #expect(try read("{socket: /run/redis.sock, tls: {insecure_skip_verify: true}}").problems.isEmpty)
    }

    @Test func aClientBuildsEachContextOnce() throws {
        let contexts = RedisTLSContexts()
        #expect(try contexts.context(for: nil) == nil)
        var settings = RedisTLSSettings()
        let first = try #require(try contexts.context(for: settings))
        #expect(try contexts.context(for: settings) === first)
        settings.serverName = "sentinel.example"  // the Sentinels' own settings: a context of their own
        let second = try #require(try contexts.context(for: settings))
        #expect(second !== first && second.settings == settings)
        settings.caFile = "/nonexistent/ca.pem"
        #expect(throws: RedisError.self) { try contexts.context(for: settings) }
    }

    private func write(_ path: String, _ text: String) -> Bool {
        guard let file = fopen(path, "w") else { return false }
        defer { fclose(file) }
        return fputs(text, file) >= 0
    }
}

/// The reply reader's caps: a hostile or broken server gets an error, not the memory.
@Suite struct RedisReplyReaderTests {
    private func replies(_ wire: String, feedingBy slice: Int = 4096,
                         maxElements: Int = RedisReplyReader.maxReplyElements) throws -> [RedisValue] {
        let reader = try RedisReplyReader(maxElements: maxElements)
        var values: [RedisValue] = []
        let bytes = Array(wire.utf8)
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + slice, bytes.count)
            try bytes[offset..<end].withUnsafeBytes { try reader.feed($0) }
            offset = end
            while let value = try reader.next() { values.append(value) }
        }
        return values
    }

    @Test func readsRepliesFedInAnySlices() throws {
        let wire = "+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*2\r\n:1\r\n*1\r\n-ERR bad\r\n"
        let expected: [RedisValue] = [.status("OK"), .integer(42), .string("hello"), .null,
                                      .array([.integer(1), .array([.error("ERR bad")])])]
        for slice in [1, 2, 3, 7, 4096] {
            #expect(try replies(wire, feedingBy: slice) == expected)
        }
    }

    @Test func aHugeArrayHeaderIsRefusedBeforeItsAllocation() {
        #expect {
            try replies("*2147483647\r\n")
        } throws: { error in
            "\(error)".contains("more than \(RedisReplyReader.maxReplyElements) array elements")
        }
        // Nested arrays count together, and every reply of a pipeline too.
        #expect {
            try replies("*2\r\n*3\r\n", maxElements: 4)
        } throws: { error in
            (error as? RedisError)?.kind == .connection && "\(error)".contains("more than 4 array elements")
        }
        let three = RedisValue.array([.integer(1), .integer(2), .integer(3)])
        #expect((try? replies(String(repeating: "*3\r\n:1\r\n:2\r\n:3\r\n", count: 3), maxElements: 9)) == [three, three, three])
        #expect(throws: RedisError.self) { try replies(String(repeating: "*3\r\n:1\r\n:2\r\n:3\r\n", count: 3), maxElements: 8) }
    }

    @Test func aReplyBeyondTheByteCapIsRefused() throws {
        let reader = try RedisReplyReader(maxBytes: 1 << 20)
        try Array("$999999999999\r\n".utf8).withUnsafeBytes { try reader.feed($0) }
        #expect(try reader.next() == nil)
        let chunk = [UInt8](repeating: 0x61, count: 64 << 10)
        var refused: RedisError?
        for _ in 0..<17 {
            do {
                try chunk.withUnsafeBytes { try reader.feed($0) }
                _ = try reader.next()
            } catch {
                refused = error as? RedisError
                break
            }
        }
        #expect(refused?.message == "a reply larger than 1 MiB: refused")
        // The cap is per reply: many replies together may exceed it.
        let small = try RedisReplyReader(maxBytes: 64)
        for _ in 0..<100 {
            try Array(":12345\r\n".utf8).withUnsafeBytes { try small.feed($0) }
            #expect(try small.next() == .integer(12345))
        }
        #expect(!small.hasPendingBytes)
    }

    @Test func protocolErrorsAreConnectionErrors() {
        #expect {
            try replies("?what\r\n")
        } throws: { error in
            (error as? RedisError)?.kind == .connection && "\(error)".hasPrefix("unreadable reply: ")
        }
    }
}

/// A whole round trip is bounded, not only each wait in it.
@Suite struct RedisPipelineLimitTests {
    @Test func aPipelineMayTakeFiveCommandTimeoutsAndAnAbsurdOneDoesNotTrap() {
        #expect(RedisConnection.pipelineLimit(.seconds(2)) == .seconds(10))
        #expect(RedisConnection.pipelineLimit(.seconds(Int64.max / 2)) == .seconds(Int64.max / 2))
    }
}
