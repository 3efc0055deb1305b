import Glibc
import Testing
@testable import Telltale
@testable import TelltaleAlerting
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore
@testable import TelltaleServer

/// Regressions of the hardening issue that need no running services.
@Suite struct BoundedFileTests {
    @Test func readsARegularFileWithoutTheTrailingLineBreak() throws {
        let path = temporaryDirectory() + "/secret"
        let file = fopen(path, "w")
        fputs("s3cret\n", file)
        fclose(file)
        #expect(try BoundedFile.readSecret(path).get() == "s3cret")
    }

    /// Regression: `/dev/zero` exhausted memory, a FIFO blocked `check-config` for ever.
    @Test func refusesDevicesFifosAndOversizedFiles() throws {
        #expect(throws: FileProblem.self) { try BoundedFile.readSecret("/dev/zero").get() }
        let fifo = temporaryDirectory() + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        #expect(throws: FileProblem.self) { try BoundedFile.readSecret(fifo).get() }
        let big = temporaryDirectory() + "/big"
        let file = fopen(big, "w")
        fputs(String(repeating: "x", count: BoundedFile.secretLimit + 1), file)
        fclose(file)
        #expect(throws: FileProblem.self) { try BoundedFile.readSecret(big).get() }
    }
}

@Suite struct YAMLAliasTests {
    /// Regression: a "billion laughs" document used as a mapping key spun at 100 % CPU.
    @Test func aliasBombsAreRejectedBeforeParsing() {
        var yaml = "a0: &a0 [x, x]\n"
        for level in 1...40 { yaml += "a\(level): &a\(level) [*a\(level - 1), *a\(level - 1)]\n" }
        yaml += "? *a40\n: boom\n"
        #expect(throws: ConfigErrors.self) { try TelltaleConfig.parse(yaml) }
    }

    /// Regression (review): 25 aliases within the old count limit cost 13 s and 280 MB; CR line
    /// endings and quotes inside flow scalars slipped past a textual count.
    @Test func expansionIsCountedExactlyWhateverTheSyntax() {
        var chain = "a0: &a0 [x, x]\r"
        for level in 1...13 { chain += "a\(level): &a\(level) [q 'z, *a\(level - 1), *a\(level - 1)]\r" }
        #expect(YAMLAliases.nodesAddedByAliases(chain).map { $0 > YAMLAliases.limit } == true)
        #expect(YAMLAliases.problem(chain) != nil)
    }

    @Test func ordinaryAliasesAndAsterisksAreFine() {
        let yaml = """
            # *not *an *alias
            a: "*quoted *text"
            c: .*pattern*
            d: &base {x: 1, y: 2}
            e: *base
            """
        #expect(YAMLAliases.nodesAddedByAliases(yaml) == 4)
        #expect(YAMLAliases.problem(yaml) == nil)
    }
}

@Suite struct RedactorTests {
    /// Regression: an echo cut to 120 characters before redaction leaked all but the last
    /// characters of a key; upper-cased and percent-encoded echoes were not redacted at all.
    @Test func redactsBeforeClippingInAnyCaseAndEncoding() {
        let redactor = Redactor(["abcDEF+/=123"])
        let echo = String(repeating: "x", count: 110) + "abcDEF+/=123 tail"
        let clipped = redactor.redact(echo, clippedTo: 120)
        #expect(!clipped.contains("abcDEF"))
        #expect(!clipped.lowercased().contains("abcdef"))
        #expect(redactor.redact("key ABCDEF+/=123!") == "key ***!")
        #expect(redactor.redact("url?key=abcDEF%2B%2F%3D123&x") == "url?key=***&x")
        #expect(redactor.redact("url?key=abcdef%2b%2f%3d123&x") == "url?key=***&x")
    }

    @Test func leavesTextWithoutSecretsAlone() {
        #expect(Redactor([]).redact("hello") == "hello")
        #expect(Redactor(["zzzz"]).redact("héllo wörld") == "héllo wörld")
        // A secret too short to be told from ordinary text is not looked for.
        #expect(Redactor(["p"]).redact("connection to port 5432 failed") == "connection to port 5432 failed")
    }
}

@Suite struct ChannelSecretsTests {
    func secrets(directory: String = "/nonexistent-telltale") -> ChannelSecrets {
        var config = AlertingConfig()
        config.channelFileDirectory = directory
        return ChannelSecrets(config)
    }

    /// Regression: a channel row could name any variable (the database password reached
    /// `last_error` and a DNS query) or any file.
    @Test func onlyPrefixedVariablesAndFilesBelowTheDirectory() throws {
        setenv("TELLTALE_PG_PASSWORD", "hunter2", 1)
        setenv("TELLTALE_CHANNEL_OPS", "https://hooks.example/x", 1)
        #expect(throws: FileProblem.self) { try secrets().url(env: "TELLTALE_PG_PASSWORD", file: nil).get() }
        #expect(throws: FileProblem.self) { try secrets().url(env: "PATH", file: nil).get() }
        #expect(try secrets().url(env: "TELLTALE_CHANNEL_OPS", file: nil).get() == "https://hooks.example/x")
        if case .failure(let problem) = secrets().url(env: "TELLTALE_PG_PASSWORD", file: nil) {
            #expect(!problem.description.contains("hunter2"))
        }

        let directory = temporaryDirectory()
        let inside = directory + "/ops"
        let file = fopen(inside, "w")
        fputs("https://hooks.example/y\n", file)
        fclose(file)
        #expect(try secrets(directory: directory).url(env: nil, file: inside).get() == "https://hooks.example/y")
        #expect(throws: FileProblem.self) { try secrets(directory: directory).url(env: nil, file: "/etc/passwd").get() }
        #expect(throws: FileProblem.self) { try secrets(directory: directory).url(env: nil, file: directory + "/../../etc/passwd").get() }
        symlink("/etc/passwd", directory + "/link")
        #expect(throws: FileProblem.self) { try secrets(directory: directory).url(env: nil, file: directory + "/link").get() }
    }
}
