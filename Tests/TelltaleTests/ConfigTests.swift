import Foundation
import Logging
import Testing
@testable import Telltale
@testable import TelltaleAlerting
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore
@testable import TelltaleServer

@Suite struct ConfigTests {
    @Test func emptyFileGivesDefaults() throws {
        let config = try TelltaleConfig.parse("")
        #expect(config.server.listen.port == 9839)
        #expect(config.source(ProcessCollectorConfig.self)!.enabled && config.source(HostCollectorConfig.self)!.enabled)
        #expect(config.source(HostCollectorConfig.self)!.filesystems == ["/"])
    }

    @Test func fullConfigIsRead() throws {
        let config = try TelltaleConfig.parse("""
            server:
              listen: 127.0.0.1:9999
              auth:
                basic: {username: ops, password: s3cret}
            log: {level: debug}
            collectors:
              process:
                interval: 30s
                timeout: 500ms
                watch:
                  - {name: api, pid_file: /run/api.pid}
                  - {name: worker, pattern: "node .*worker"}
              host:
                enabled: false
                filesystems: [/, /var]
            """)
        #expect(config.server.listen == ListenAddress("127.0.0.1:9999"))
        #expect(config.server.auth == .basic(username: "ops", password: "s3cret"))
        #expect(config.logLevel == .debug)
        #expect(config.source(ProcessCollectorConfig.self)!.schedule == Schedule(interval: .seconds(30), timeout: .milliseconds(500)))
        #expect(config.source(ProcessCollectorConfig.self)!.watch == [WatchedProcess(name: "api", match: .pidFile("/run/api.pid")),
                                         WatchedProcess(name: "worker", match: .pattern("node .*worker"))])
        #expect(!config.source(HostCollectorConfig.self)!.enabled)
        #expect(config.source(HostCollectorConfig.self)!.filesystems == ["/", "/var"])
    }

    @Test func everyProblemIsReportedWithItsKeyPath() {
        let yaml = """
            server:
              listen: "localhost:70000"
              colour: blue
            collectors:
              process:
                enabled: maybe
                interval: [1, 2]
                watch:
                  - {name: x}
              host:
                timeout: soon
            extra: 1
            """
        #expect {
            try TelltaleConfig.parse(yaml)
        } throws: { error in
            let problems = (error as? ConfigErrors)?.problems ?? []
            return problems.contains { $0.hasPrefix("server.listen:") }
                && problems.contains("server.colour: unknown key")
                && problems.contains { $0.hasPrefix("collectors.process.enabled: expected true or false") }
                && problems.contains { $0.hasPrefix("collectors.process.interval: expected a single value") }
                && problems.contains { $0.hasPrefix("collectors.process.watch[0]: set exactly one of pid_file or pattern") }
                && problems.contains { $0.hasPrefix("collectors.host.timeout: expected a positive duration") }
                && problems.contains("extra: unknown key")
        }
    }

    /// Every body contains "": an empty expectation (say, a variable that expanded to
    /// nothing) would make the probe pass whatever the endpoint answers.
    @Test func emptyExpectedBodyIsRejected() {
        unsetenv("TELLTALE_TEST_MISSING")
        for body in [#"expect_body: """#, #"expect_body: "${TELLTALE_TEST_MISSING:-}""#] {
            #expect {
                try TelltaleConfig.parse("probes:\n  - {name: app, url: \"http://127.0.0.1:1/health\", \(body)}")
            } throws: { error in
                (error as? ConfigErrors)?.problems == ["probes[0].expect_body: must not be empty"]
            }
        }
    }

    @Test func environmentSubstitution() throws {
        setenv("TELLTALE_TEST_PORT", "9123", 1)
        unsetenv("TELLTALE_TEST_MISSING")
        let config = try TelltaleConfig.parse("server: {listen: \"127.0.0.1:${TELLTALE_TEST_PORT}\"}")
        #expect(config.server.listen.port == 9123)
        let fallback = try TelltaleConfig.parse("server: {listen: \"${TELLTALE_TEST_MISSING:-:9200}\"}")
        #expect(fallback.server.listen.port == 9200)
        #expect {
            try TelltaleConfig.parse("server: {listen: \"${TELLTALE_TEST_MISSING}\"}")
        } throws: { error in
            (error as? ConfigErrors)?.problems == ["server.listen: environment variable TELLTALE_TEST_MISSING is not set"]
        }
    }

    @Test func secretsFromFilesAndNeverInProblems() throws {
        let path = "/tmp/telltale-config-test-token"
        try "tok-from-file\n".write(toFile: path, atomically: true, encoding: .utf8)
        let config = try TelltaleConfig.parse("server: {auth: {bearer_token_file: \(path)}}")
        #expect(config.server.auth == .bearer(token: "tok-from-file"))
        #expect("\(config.server.auth!)" == "bearer token")
        #expect {
            try TelltaleConfig.parse("server: {auth: {bearer_token: hunter2, bearer_token_file: \(path)}}")
        } throws: { error in
            "\(error)".contains("bearer_token") && !"\(error)".contains("hunter2") && !"\(error)".contains("tok-from-file")
        }
    }

    @Test func durations() {
        #expect(parseDuration("500ms") == .milliseconds(500))
        #expect(parseDuration("1.5s") == .milliseconds(1500))
        #expect(parseDuration("2m") == .seconds(120))
        #expect(parseDuration("7") == .seconds(7))
        #expect(parseDuration("soon") == nil)
    }

    @Test func listenAddresses() {
        #expect(ListenAddress(":9839")?.host == "0.0.0.0")
        #expect(ListenAddress("[::1]:9000")?.host == "::1")
        #expect(ListenAddress("host:0") == nil)
        #expect(ListenAddress("host") == nil)
        // Regression: these passed check-config, then serve failed with a raw socket error.
        for bad in ["[::1:9839", "::1:9839", "[::1]]:9839", "bad_host:1", "-x:1", "[]:1", "[not-v6]:1"] {
            #expect(ListenAddress(bad) == nil, "\(bad)")
        }
        #expect(ListenAddress("localhost:80")?.host == "localhost")
        #expect(ListenAddress("10.1.2.3:80")?.host == "10.1.2.3")
    }
}
