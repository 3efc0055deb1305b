import CHiredis
import Glibc
import HTTPTypes
import TelltaleMetrics
@testable import Telltale
@testable import TelltaleAlerting
@testable import TelltaleClients
@testable import TelltaleCollectors
@testable import TelltaleCore
@testable import TelltaleServer

/// Fuzz targets: each takes arbitrary bytes and must neither crash, nor hang, nor break an
/// invariant (checked with `require`, which aborts so that libFuzzer keeps the input).
///
/// Built two ways (scripts/fuzz.sh):
/// - normally, `telltale-fuzz TARGET FILE…` replays inputs: the committed corpora run as
///   regression tests in every CI run;
/// - with `-sanitize=fuzzer -DFUZZING`, libFuzzer drives `LLVMFuzzerTestOneInput` and the
///   target comes from `TELLTALE_FUZZ_TARGET`.
enum FuzzTargets {
    static let all: [String: @Sendable ([UInt8]) -> Void] = [
        "config": config, "exposition": exposition, "jsonpath": jsonPath, "matchers": matchers,
        "negotiation": negotiation, "redaction": redaction, "redis": redisReplies, "alerting-rows": alertingRows,
        "web-config": webConfig,
    ]

    /// The web configuration reader, and the request guard on an arbitrary `Authorization`
    /// header (the first line): any text is a configuration or problems naming the file, and
    /// a header is let through, refused or sent to a bcrypt check, never more.
    static func webConfig(_ bytes: [UInt8]) {
        let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) ?? bytes.endIndex
        let header = String(decoding: bytes[..<newline], as: UTF8.self)
        if let config = try? WebConfig.parse(String(decoding: bytes[newline...], as: UTF8.self), path: "fuzz.yml") {
            require(config.users.values.allSatisfy { Bcrypt.problem($0) == nil }, "an invalid hash was accepted")
        }
        let guardian = RequestGuard(auth: nil, web: WebConfig(path: "fuzz.yml", users: ["alice": "$2b$04$" + String(repeating: "a", count: 53)]))
        var fields = HTTPFields()
        if let name = HTTPField.Name("Authorization") { fields[name] = header }
        if case .allow = guardian.decide(fields) { require(false, "a header passed without a check") }
    }

    /// The configuration reader: any text is a configuration or a list of problems.
    static func config(_ bytes: [UInt8]) {
        _ = try? TelltaleConfig.parse(String(decoding: bytes, as: UTF8.self))
    }

    /// Both encoders with arbitrary label values and numbers: the output is valid UTF-8 and
    /// every line is a comment, a sample or (OpenMetrics) the EOF marker.
    static func exposition(_ bytes: [UInt8]) {
        var input = Input(bytes)
        var gauge = FamilyBuilder(MetricDescriptor("fuzz_gauge", .gauge, help: input.text(40)))
        var counter = FamilyBuilder(MetricDescriptor("fuzz_events", .counter, help: "h"))
        var histogram = FamilyBuilder(MetricDescriptor("fuzz_seconds", .histogram, help: "h", unit: "seconds"),
                                      buckets: [0.1, 1, 10])
        while !input.isEmpty {
            let labels = Labels([("a", input.text(16)), ("b_c", input.text(8))])
            gauge.set(input.double(), labels)
            counter.add(abs(input.double()), labels)
            histogram.observe(input.double(), labels)
        }
        for format in ExpositionFormat.allCases {
            let output = ExpositionEncoder.encode([gauge.build(), counter.build(), histogram.build()], format: format)
            let text = String(validating: output, as: UTF8.self)
            require(text != nil, "\(format) output is not UTF-8")
            for line in (text ?? "").split(separator: "\n") {
                require(line.hasPrefix("#") || line.hasPrefix("fuzz_"), "\(format) line \(line.prefix(80))")
            }
        }
    }

    /// A path (first line) against a JSON document (the rest).
    static func jsonPath(_ bytes: [UInt8]) {
        let newline = bytes.firstIndex(of: 10) ?? bytes.count
        guard let path = JSONPath(String(decoding: bytes[..<newline], as: UTF8.self)),
              let document = JSONValue.parse(Array(bytes[min(newline + 1, bytes.count)...])) else { return }
        for (labels, node) in path.select(document).prefix(10_000) {
            _ = (labels, node.number, node.labelText)
        }
    }

    /// Rule matchers: parsing, and matching a label value (the rest after the first line),
    /// which must end within the regex budget or report it.
    static func matchers(_ bytes: [UInt8]) {
        let newline = bytes.firstIndex(of: 10) ?? bytes.count
        guard case .success(let matchers) = LabelMatcher.parseList(String(decoding: bytes[..<newline], as: UTF8.self)) else {
            return
        }
        let value = String(decoding: bytes[min(newline + 1, bytes.count)...], as: UTF8.self)
        for matcher in matchers {
            _ = try? matcher.matches(Labels([(matcher.name, value)]))
        }
    }

    /// Columns an admin portal writes: a mute time's window (weekdays, times, time zone), asked
    /// about an instant of this century, and a channel's grouping settings.
    static func alertingRows(_ bytes: [UInt8]) {
        var input = Input(bytes)
        let window = MuteWindow.parse(weekdays: input.text(60), start: input.text(8), end: input.text(8), timeZone: input.text(40))
        if case .success(let window) = window {
            let instant = input.double()
            _ = window.contains(instant.isFinite ? abs(instant.truncatingRemainder(dividingBy: 3e9)) : 0)
        }
        let grouping = GroupSettings.parse(groupBy: input.text(200), wait: input.double(), interval: input.double(),
                                           repeatInterval: input.double(), muteTime: input.text(40))
        if case .success(let settings) = grouping {
            require([settings.wait, settings.interval, settings.repeatInterval].allSatisfy { $0 >= 0 && $0.isFinite },
                    "grouping seconds out of range")
        }
    }

    /// Redis replies as a server (or anything on its port) might send them, through the
    /// connection's reply reader (hiredis' reader with Telltale's caps) and the conversion to
    /// `RedisValue`; then through the queue reads.
    static func redisReplies(_ bytes: [UInt8]) {
        guard let reader = try? RedisReplyReader() else { return }
        var values: [RedisValue] = []
        // Fed in two parts, as replies arrive split across reads.
        let half = bytes.count / 2
        for part in [bytes[..<half], bytes[half...]] {
            do {
                try part.withUnsafeBytes { try reader.feed($0) }
                while values.count < 10_000, let value = try reader.next() { values.append(value) }
            } catch {
                break
            }
        }
        for chunk in values.chunks(of: QueueCounts.commandCount) {
            let counts = QueueCounts(queue: QueueID(prefix: "bull", name: "fuzz", source: "default"), replies: chunk)
            _ = (counts.error.map(RedisReplyError.describe), counts.states, counts.events.count)
        }
    }

    /// Accept and Accept-Encoding headers of any size and shape.
    static func negotiation(_ bytes: [UInt8]) {
        let header = String(decoding: bytes, as: UTF8.self)
        _ = ContentNegotiation.format(accept: header)
        _ = ContentNegotiation.acceptsGzip(header)
    }

    /// Redaction: clipping redacts first (the result equals redacting the whole text, then
    /// clipping, wherever the secret sits relative to the cut), and no secret survives in
    /// either case or in its percent-encoded form.
    static func redaction(_ bytes: [UInt8]) {
        let newline = bytes.firstIndex(of: 10) ?? bytes.count
        let secret = String(decoding: bytes[..<newline], as: UTF8.self)
        let text = String(decoding: bytes[min(newline + 1, bytes.count)...], as: UTF8.self)
        guard secret.utf8.count >= 8, secret.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "*" }) else { return }
        let redactor = Redactor([secret])
        let encoded = secret.utf8.map { byte -> String in
            let unreserved = (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte)
                || [45, 46, 95, 126].contains(byte)
            return unreserved ? String(UnicodeScalar(byte)) : "%" + String(byte, radix: 16, uppercase: true).leftPadded(2)
        }.joined()
        for echoed in [text + secret, text + secret.uppercased(), text + encoded.lowercased()] {
            let clipped = redactor.redact(echoed, clippedTo: 120)
            require(clipped == redactor.redact(echoed).clipped(120), "clipping before redacting")
            let whole = Array(redactor.redact(echoed).lowercased().utf8)
            for form in [secret, encoded] {
                require(!Self.contains(whole, Array(form.lowercased().utf8)), "secret survived redaction")
            }
        }
    }

    /// Byte-wise, so that NUL bytes count like any other (Foundation's `contains` does not).
    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return needle.isEmpty }
        return (0...(haystack.count - needle.count)).contains { start in haystack[start..<start + needle.count].elementsEqual(needle) }
    }

    static func require(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition {
            printError("fuzz invariant broken: \(message())\n")
            abort()
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// Writes straight to file descriptor 2: the C `stderr` global is not concurrency-safe in Swift 6.
func printError(_ message: String) {
    var bytes = Array(message.utf8)
    _ = write(2, &bytes, bytes.count)
}

/// Reads typed values off the front of the fuzz input.
struct Input {
    private var bytes: ArraySlice<UInt8>

    init(_ bytes: [UInt8]) { self.bytes = bytes[...] }

    var isEmpty: Bool { bytes.isEmpty }

    mutating func text(_ maxLength: Int) -> String {
        let length = Int(bytes.popFirst() ?? 0) % (maxLength + 1)
        let taken = bytes.prefix(length)
        bytes = bytes.dropFirst(length)
        return String(decoding: taken, as: UTF8.self)
    }

    mutating func double() -> Double {
        var raw: UInt64 = 0
        for _ in 0..<8 { raw = raw << 8 | UInt64(bytes.popFirst() ?? 0) }
        return Double(bitPattern: raw)
    }
}

#if FUZZING
private let selected: @Sendable ([UInt8]) -> Void = {
    let name = getenv("TELLTALE_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let target = FuzzTargets.all[name] else {
        printError("set TELLTALE_FUZZ_TARGET to one of: \(FuzzTargets.all.keys.sorted().joined(separator: ", "))\n")
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    selected(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

public typealias CArguments = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<CArguments>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// SwiftPM links an executable's entry point under this name; libFuzzer's driver takes over.
@_cdecl("telltale_fuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: CArguments) -> Int32 {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments) { data, size in fuzzOneInput(data, size) }
}
#else
/// `telltale-fuzz TARGET FILE_OR_DIRECTORY…`: runs every input once; exit 0 when none crashed.
@main
struct Replay {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        guard let name = arguments.first, let target = FuzzTargets.all[name] else {
            printError("usage: telltale-fuzz {\(FuzzTargets.all.keys.sorted().joined(separator: "|"))} FILE_OR_DIRECTORY…\n")
            exit(2)
        }
        var count = 0
        for path in arguments.dropFirst() {
            for file in ProcFS.list(path).map({ $0.sorted().map { "\(path)/\($0)" } }) ?? [path] {
                switch BoundedFile.readBytes(file, limit: 1 << 20) {
                case .success(let input):
                    target(input)
                    count += 1
                case .failure(let problem):
                    printError("\(problem)\n")
                    exit(1)
                }
            }
        }
        guard count > 0 else {
            printError("\(name): no inputs (a corpus must not be empty)\n")
            exit(1)
        }
        print("\(name): \(count) inputs replayed")
    }
}
#endif
