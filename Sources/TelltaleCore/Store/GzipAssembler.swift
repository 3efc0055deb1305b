import CZlib
import CompressNIO
import NIOCore
import TelltaleMetrics

/// One piece of an exposition, deflated on its own: raw deflate ending on a sync flush, so it
/// is byte-aligned and open, and pieces can be concatenated into one stream (as pigz does).
package struct DeflatedChunk: Sendable {
    package let deflated: ByteBuffer
    package let crc: UInt
    package let length: Int

    package init(_ bytes: ByteBuffer, compressor: ZlibCompressor) throws {
        var input = bytes
        var output = ByteBuffer()
        output.reserveCapacity(compressor.maxSize(from: input))
        try compressor.reset()
        try compressor.deflate(from: &input, to: &output, flush: .sync)
        // The output was sized for the worst case, about the input's size; the cache keeps only
        // the bytes (an exposition deflates to a tenth of that).
        deflated = ByteBuffer(bytes: output.readableBytesView)
        crc = bytes.withUnsafeReadableBytes { crc32_z(0, $0.baseAddress, $0.count) }
        length = bytes.readableBytes
    }
}

/// A gzip body assembled from cached chunks around a small uncompressed middle.
///
/// `/metrics` is rendered once per change, but `telltale_scrapes_total` changes with every
/// request and sorts in the middle of the exposition. The families before and after it are
/// cached as deflated chunks; each request adds a stored block with the few changing bytes
/// and a CRC-32 combined from the cached ones. The result is one ordinary gzip member
/// (RFC 1952), so any gzip reader accepts it.
package struct GzipSegments: Sendable {
    private let pieces: Pieces
    private let headCRC: UInt
    private let headLength: Int
    private let tailCRC: UInt
    private let tailLength: Int

    /// `trailer` (OpenMetrics' `# EOF`) ends the stream in a final stored block.
    package init(head headChunks: [DeflatedChunk], tail tailChunks: [DeflatedChunk], trailer: [UInt8]) {
        // Header: magic, deflate, no flags, no mtime, no extra flags, unknown OS.
        let header = ByteBuffer(bytes: [0x1F, 0x8B, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xFF])
        (headCRC, headLength) = Self.combined(headChunks)
        var end = ByteBuffer()
        Self.writeStoredBlock(trailer, final: true, to: &end)
        pieces = Pieces(head: [header] + headChunks.map(\.deflated), tail: tailChunks.map(\.deflated) + [end])
        var (crc, length) = Self.combined(tailChunks)
        crc = crc32_combine(crc, trailer.withUnsafeBufferPointer { crc32_z(0, $0.baseAddress, $0.count) }, off_t(trailer.count))
        (tailCRC, tailLength) = (crc, length + trailer.count)
    }

    /// The parts of a complete gzip member for `head + middle + tail`: the joined head and
    /// tail are shared, not copied. `middle` must be under 64 KiB.
    package func body(middle: [UInt8], allocator: ByteBufferAllocator) -> [ByteBuffer] {
        let (head, tail) = pieces.joined(allocator: allocator)
        var block = allocator.buffer(capacity: 5 + middle.count)
        Self.writeStoredBlock(middle, final: false, to: &block)
        var trailer = allocator.buffer(capacity: 8)
        let middleCRC = middle.withUnsafeBufferPointer { crc32_z(0, $0.baseAddress, $0.count) }
        var crc = crc32_combine(headCRC, middleCRC, off_t(middle.count))
        crc = crc32_combine(crc, tailCRC, off_t(tailLength))
        trailer.writeInteger(UInt32(truncatingIfNeeded: crc), endianness: .little)
        trailer.writeInteger(UInt32(truncatingIfNeeded: headLength + middle.count + tailLength), endianness: .little)
        return [head, block, tail, trailer]
    }

    /// The CRC and length of the bytes the chunks hold, in order.
    private static func combined(_ chunks: [DeflatedChunk]) -> (UInt, Int) {
        var crc: UInt = 0
        var length = 0
        for chunk in chunks {
            crc = crc32_combine(crc, chunk.crc, off_t(chunk.length))
            length += chunk.length
        }
        return (crc, length)
    }

    /// A stored (uncompressed) block on a byte boundary: BFINAL, BTYPE=00, LEN and its complement.
    private static func writeStoredBlock(_ bytes: [UInt8], final: Bool, to buffer: inout ByteBuffer) {
        let length = UInt16(truncatingIfNeeded: bytes.count)
        buffer.writeInteger(UInt8(final ? 1 : 0))
        buffer.writeInteger(length, endianness: .little)
        buffer.writeInteger(~length, endianness: .little)
        buffer.writeBytes(bytes)
    }
}

/// The head's and the tail's buffers (the gzip header, the chunks, the trailer block), each
/// joined into one on the first request after a render: a request then writes four buffers.
/// Written from the chunks themselves, a request cost a pipeline write per chunk, or, joined
/// per request, a copy of the whole body (130 KB with everything on, at every scrape). Once
/// joined, the separate buffers are let go: the large families' chunks stay in the cache, and
/// the rest is not kept twice.
private struct Pieces: Sendable {
    private let joined: MadeFrom<(head: [ByteBuffer], tail: [ByteBuffer]), (head: ByteBuffer, tail: ByteBuffer)>

    init(head: [ByteBuffer], tail: [ByteBuffer]) {
        joined = MadeFrom((head, tail))
    }

    func joined(allocator: ByteBufferAllocator) -> (head: ByteBuffer, tail: ByteBuffer) {
        joined.get { (Self.join($0.head, allocator), Self.join($0.tail, allocator)) }
    }

    private static func join(_ buffers: [ByteBuffer], _ allocator: ByteBufferAllocator) -> ByteBuffer {
        // Sized exactly: growing a buffer rounds its capacity up to a power of two.
        var joined = allocator.buffer(capacity: buffers.reduce(0) { $0 + $1.readableBytes })
        for buffer in buffers { joined.writeImmutableBuffer(buffer) }
        return joined
    }
}
