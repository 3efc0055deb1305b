import CHiredis
import TelltaleCore

/// Owns one hiredis reply reader (`redisReader`) and frees it exactly once, in `deinit`,
/// with the object functions and limits it points at.
///
/// hiredis 0.14 bounds neither a reply's size nor an array's length (up to 2³¹ elements,
/// allocated up front when the header arrives): both are capped here, so that a server (or
/// anything answering on its port) makes an error, not an exhausted memory.
package final class RedisReplyReader {
    /// The most bytes one reply (with everything nested in it) may take on the wire.
    package static let maxReplyBytes = 512 << 20
    /// The most array elements the replies to one pipeline may hold, nested arrays included
    /// (each costs hiredis about 64 bytes, and the pipeline's replies are all kept).
    package static let maxReplyElements = 1 << 22

    private let maxBytes: Int

    private let reader: UnsafeMutablePointer<redisReader>
    private let functions: UnsafeMutablePointer<redisReplyObjectFunctions>
    private let limits: UnsafeMutablePointer<Limits>
    /// Bytes fed since the last complete reply: the size of the reply being read so far.
    private var pendingBytes = 0

    /// Reached through the reader's `privdata`, which hiredis hands to every read task.
    private struct Limits {
        var createArray: (@convention(c) (UnsafePointer<redisReadTask>?, Int32) -> UnsafeMutableRawPointer?)?
        let maxElements: Int
        var elements = 0
        var exceeded = false
    }

    /// A reader with the given caps (smaller ones in tests).
    package init(maxBytes: Int = maxReplyBytes, maxElements: Int = maxReplyElements) throws(RedisError) {
        guard let reader = redisReaderCreate(), let defaults = reader.pointee.fn else {
            throw RedisError(kind: .connect, message: "hiredis could not allocate a reply reader")
        }
        self.reader = reader
        functions = .allocate(capacity: 1)
        functions.initialize(to: defaults.pointee)
        limits = .allocate(capacity: 1)
        limits.initialize(to: Limits(createArray: defaults.pointee.createArray, maxElements: maxElements))
        self.maxBytes = maxBytes
        // An array beyond the budget is refused: hiredis reports it as out of memory, which
        // `next()` turns into the limit's message.
        functions.pointee.createArray = { task, elements in
            guard let task, let raw = task.pointee.privdata else { return nil }
            let limits = raw.assumingMemoryBound(to: Limits.self)
            let total = limits.pointee.elements + Int(elements)
            guard elements >= 0, total <= limits.pointee.maxElements, let create = limits.pointee.createArray else {
                limits.pointee.exceeded = true
                return nil
            }
            limits.pointee.elements = total
            return create(task, elements)
        }
        reader.pointee.fn = functions
        reader.pointee.privdata = UnsafeMutableRawPointer(limits)
    }

    deinit {
        // Frees a partly read reply through `functions`, so they go after the reader.
        redisReaderFree(reader)
        functions.deinitialize(count: 1)
        functions.deallocate()
        limits.deinitialize(count: 1)
        limits.deallocate()
    }

    /// A new pipeline: its replies get the whole element budget.
    package func startPipeline() {
        limits.pointee.elements = 0
    }

    /// Whether bytes were fed that no returned reply accounts for.
    package var hasPendingBytes: Bool { pendingBytes > 0 }

    package func feed(_ bytes: UnsafeRawBufferPointer) throws(RedisError) {
        pendingBytes += bytes.count
        guard pendingBytes <= maxBytes else {
            throw RedisError(kind: .connection, message: "a reply larger than \(Self.size(maxBytes)): refused")
        }
        guard redisReaderFeed(reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count) == REDIS_OK else {
            throw readerError()
        }
    }

    /// The next complete reply as a value, or nil until more bytes are fed.
    package func next() throws(RedisError) -> RedisValue? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else { throw readerError() }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        pendingBytes = reader.pointee.len - reader.pointee.pos
        return RedisConnection.value(raw.assumingMemoryBound(to: redisReply.self))
    }

    private static func size(_ bytes: Int) -> String {
        bytes >= 1 << 20 && bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : "\(bytes) bytes"
    }

    private func readerError() -> RedisError {
        if limits.pointee.exceeded {
            return RedisError(kind: .connection, message: "replies to one pipeline with more than \(limits.pointee.maxElements) array elements: refused")
        }
        let message = withUnsafeBytes(of: reader.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return RedisError(kind: .connection, message: "unreadable reply: \(message)")
    }
}
