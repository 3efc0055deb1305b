import NIOCore
import TelltaleCore
import TelltaleMetrics

/// Commands encoded in RESP, Redis' wire format, into one buffer that is sent as one pipeline.
///
/// Encoding here instead of command by command in hiredis saves, per command, an argv array,
/// a formatted copy and their allocations; and each command is written in one pass over raw
/// memory. A queue collection sends tens of thousands of commands: building them the
/// ordinary way was about a third of the collector's CPU time.
public struct RedisCommands: Sendable {
    private(set) var bytes = ByteBuffer()
    /// How many commands, hence how many replies to read.
    public private(set) var count = 0
    /// Per command, where it starts in `bytes` and where its first key is, so that a cluster
    /// client can send each command to the node that owns the key. Three integers a command:
    /// no key is copied and no slot is computed unless a cluster client asks.
    package private(set) var routes: [RedisRoute] = []

    public init() {}

    public init(_ commands: [[String]]) {
        for command in commands { append(command) }
    }

    public var isEmpty: Bool { count == 0 }

    /// A command whose key, if any, is its argument 1, except for the commands that take
    /// none (`keylessCommands`: INFO, CLIENT, SCAN, CLUSTER, AUTH, SELECT…), which go to the
    /// first server of a cluster (or to a named one with `pipeline(_:on:)`).
    public mutating func append(_ arguments: [String]) {
        append(arguments, keyless: arguments.count < 2 || Self.isKeyless(arguments[0]))
    }

    /// A command with its key at argument 1, or none when `keyless`.
    public mutating func append(_ arguments: [String], keyless: Bool) {
        let size = arguments.reduce(RESPWriter.overhead) { $0 + RESPWriter.overhead + $1.utf8.count }
        let key = keyless || arguments.count < 2 ? -1 : arguments[1].utf8.count
        write(size: size, keyLength: key) { writer in
            writer.arrayHeader(arguments.count)
            var keyStart = -1
            for (index, argument) in arguments.enumerated() {
                let start = writer.bulk(argument)
                if index == 1 { keyStart = start }
            }
            return keyStart
        }
    }

    /// `name key rest…` where the key is `keyPrefix + keySuffix`, written without building it.
    package mutating func append(_ name: String, key keyPrefix: String, _ keySuffix: String, _ rest: String...) {
        var size = 3 * RESPWriter.overhead + name.utf8.count + keyPrefix.utf8.count + keySuffix.utf8.count
        for argument in rest { size += RESPWriter.overhead + argument.utf8.count }
        write(size: size, keyLength: keyPrefix.utf8.count + keySuffix.utf8.count) { writer in
            writer.arrayHeader(2 + rest.count)
            writer.bulk(name)
            let keyStart = writer.bulk(keyPrefix, keySuffix)
            for argument in rest { writer.bulk(argument) }
            return keyStart
        }
    }

    /// `name key…` where every key is `keyPrefix + part + keySuffix`, written without building
    /// them. On a cluster every key must hash to the first one's slot (a shared hash tag).
    package mutating func append(_ name: String, keys keyPrefix: String, _ parts: [String], keySuffix: String) {
        let fixed = RESPWriter.overhead + keyPrefix.utf8.count + keySuffix.utf8.count
        let size = parts.reduce(2 * RESPWriter.overhead + name.utf8.count) { $0 + fixed + $1.utf8.count }
        let keyLength = parts.first.map { keyPrefix.utf8.count + $0.utf8.count + keySuffix.utf8.count } ?? -1
        write(size: size, keyLength: keyLength) { writer in
            writer.arrayHeader(1 + parts.count)
            writer.bulk(name)
            var keyStart = -1
            for part in parts {
                let start = writer.bulk(keyPrefix, part, keySuffix)
                if keyStart < 0 { keyStart = start }
            }
            return keyStart
        }
    }

    /// `body` returns where the key's bytes start in what it wrote (-1: keyless).
    private mutating func write(size: Int, keyLength: Int, _ body: (inout RESPWriter) -> Int) {
        let start = bytes.writerIndex
        var keyStart = -1
        bytes.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { memory in
            var writer = RESPWriter(memory: memory)
            keyStart = body(&writer)
            return writer.position
        }
        let keyless = keyStart < 0 || keyLength < 0
        routes.append(RedisRoute(start: start, keyStart: keyless ? -1 : start + keyStart, keyLength: keyless ? -1 : keyLength))
        count += 1
    }

    /// Commands that name no key at argument 1 (upper case).
    package static let keylessCommands: Set<String> = [
        "ASKING", "AUTH", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DBSIZE", "ECHO", "HELLO", "INFO", "LATENCY",
        "MEMORY", "PING", "QUIT", "READONLY", "READWRITE", "RESET", "ROLE", "SCAN", "SELECT", "SENTINEL", "SLOWLOG", "TIME",
    ]

    private static func isKeyless(_ name: String) -> Bool {
        keylessCommands.contains(name) || keylessCommands.contains(name.uppercased())
    }
}

/// Where a command of `RedisCommands` is: its first byte, and its first key's bytes
/// (`keyStart` -1 for a keyless command).
package struct RedisRoute: Sendable, Equatable {
    package let start: Int
    package let keyStart: Int
    package let keyLength: Int

    package var isKeyless: Bool { keyStart < 0 }
}

extension RedisCommands {
    /// The hash slot of each command's key (`RedisHashSlot`), or nil for a keyless command.
    package func slots() -> [Int?] {
        bytes.withUnsafeReadableBytes { raw in
            routes.map { route in
                guard !route.isKeyless, route.keyLength >= 0, route.keyStart + route.keyLength <= raw.count else { return nil }
                return RedisHashSlot.slot(UnsafeRawBufferPointer(rebasing: raw[route.keyStart..<(route.keyStart + route.keyLength)]))
            }
        }
    }

    /// The bytes of command `index`.
    private func range(of index: Int) -> Range<Int> {
        routes[index].start..<(index + 1 < routes.count ? routes[index + 1].start : bytes.writerIndex)
    }

    /// Appends command `index` of `other` as it was written (bytes and route).
    package mutating func append(commandAt index: Int, of other: RedisCommands) {
        let source = other.range(of: index)
        let start = bytes.writerIndex
        other.bytes.withUnsafeReadableBytes { raw in
            _ = bytes.writeBytes(UnsafeRawBufferPointer(rebasing: raw[source]))
        }
        let route = other.routes[index]
        routes.append(RedisRoute(start: start, keyStart: route.isKeyless ? -1 : start + route.keyStart - source.lowerBound,
                                 keyLength: route.keyLength))
        count += 1
    }

    /// The commands at `indices`, in that order, in a buffer of their exact size.
    package func subset(_ indices: [Int]) -> RedisCommands {
        var commands = RedisCommands()
        commands.routes.reserveCapacity(indices.count)
        commands.bytes.reserveCapacity(indices.reduce(0) { $0 + range(of: $1).count })
        for index in indices { commands.append(commandAt: index, of: self) }
        return commands
    }
}

/// Redis Cluster's key → slot function: CRC16 (XMODEM) of the key, or of its hash tag (the
/// part between the first `{` and the next `}`, when not empty), modulo 16384.
package enum RedisHashSlot {
    package static let count = 16384

    package static func slot(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { slot(UnsafeRawBufferPointer($0)) }
    }

    package static func slot(_ key: UnsafeRawBufferPointer) -> Int {
        Int(crc16(hashed(key)) & 0x3FFF)
    }

    /// The part of `key` that is hashed: its hash tag, or all of it.
    package static func hashed(_ key: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")) else { return key }
        guard let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 else { return key }
        return UnsafeRawBufferPointer(rebasing: key[(open + 1)..<close])
    }

    /// The hash tag of `text` as Redis finds it, or nil when the whole key would be hashed.
    package static func hashTag(_ text: String) -> String? {
        var text = text
        return text.withUTF8 { utf8 in
            let raw = UnsafeRawBufferPointer(utf8)
            let hashed = hashed(raw)
            return hashed.count == raw.count && hashed.baseAddress == raw.baseAddress ? nil : String(decoding: hashed, as: UTF8.self)
        }
    }

    package static func crc16(_ bytes: UnsafeRawBufferPointer) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}

/// Writes RESP into memory known to be large enough (`overhead` per element plus its bytes).
private struct RESPWriter {
    /// The most a header or bulk string adds to its content: a type byte, 20 digits, two CRLFs.
    static let overhead = 25

    let memory: UnsafeMutableRawBufferPointer
    private(set) var position = 0

    init(memory: UnsafeMutableRawBufferPointer) {
        self.memory = memory
    }

    mutating func arrayHeader(_ elements: Int) {
        byte(UInt8(ascii: "*"))
        decimal(elements)
        lineEnd()
    }

    /// One bulk string of up to three pieces; returns where its content starts.
    @discardableResult
    mutating func bulk(_ first: String, _ second: String = "", _ third: String = "") -> Int {
        byte(UInt8(ascii: "$"))
        decimal(first.utf8.count + second.utf8.count + third.utf8.count)
        lineEnd()
        let start = position
        raw(first)
        raw(second)
        raw(third)
        lineEnd()
        return start
    }

    private mutating func raw(_ text: String) {
        var text = text
        text.withUTF8 { utf8 in
            guard let source = utf8.baseAddress, !utf8.isEmpty else { return }
            (memory.baseAddress! + position).copyMemory(from: source, byteCount: utf8.count)
            position += utf8.count
        }
    }

    private mutating func decimal(_ value: Int) {
        var digits = 1
        var rest = value / 10
        while rest > 0 { digits += 1; rest /= 10 }
        rest = value
        for index in stride(from: position + digits - 1, through: position, by: -1) {
            memory[index] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
        }
        position += digits
    }

    private mutating func byte(_ value: UInt8) {
        memory[position] = value
        position += 1
    }

    private mutating func lineEnd() {
        byte(UInt8(ascii: "\r"))
        byte(UInt8(ascii: "\n"))
    }
}
