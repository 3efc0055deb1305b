import CZlib
import CompressNIO
import NIOCore

/// Builds a gzip body from two pre-compressed segments with a small uncompressed middle.
///
/// `/metrics` is rendered once per change, but `telltale_scrapes_total` changes with every
/// request and sorts in the middle of the exposition. Rather than compress the whole body per
/// request, the parts before and after it are deflated once (the first ending on a sync flush,
/// so it is byte-aligned and open), and each request only appends a stored block with the few
/// changing bytes and a CRC-32 combined from the cached ones. The result is one ordinary gzip
/// member (RFC 1952), so any gzip reader accepts it.
struct GzipSegments: Sendable {
    private let head: ByteBuffer
    private let headCRC: UInt
    private let headLength: Int
    private let tail: ByteBuffer
    private let tailCRC: UInt
    private let tailLength: Int

    init(head: [UInt8], tail: [UInt8]) throws {
        // Header: magic, deflate, no flags, no mtime, no extra flags, unknown OS.
        var compressedHead = ByteBuffer(bytes: [0x1F, 0x8B, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xFF])
        var deflated = try Self.deflate(head, finish: false)
        compressedHead.writeBuffer(&deflated)
        self.head = compressedHead
        self.headCRC = Self.crc(head)
        self.headLength = head.count
        self.tail = try Self.deflate(tail, finish: true)
        self.tailCRC = Self.crc(tail)
        self.tailLength = tail.count
    }

    /// The compressed size of the cached parts, for the benchmark and the status page.
    var compressedSize: Int { head.readableBytes + tail.readableBytes }

    /// The parts of a complete gzip member for `head + middle + tail`: the cached buffers are
    /// shared, not copied. `middle` must be under 64 KiB.
    func body(middle: [UInt8], allocator: ByteBufferAllocator) -> [ByteBuffer] {
        var block = allocator.buffer(capacity: 5 + middle.count)
        // A non-final stored block: BFINAL=0, BTYPE=00, then LEN and its complement.
        let length = UInt16(truncatingIfNeeded: middle.count)
        block.writeInteger(UInt8(0))
        block.writeInteger(length, endianness: .little)
        block.writeInteger(~length, endianness: .little)
        block.writeBytes(middle)
        var trailer = allocator.buffer(capacity: 8)
        var crc = crc32_combine(headCRC, Self.crc(middle), off_t(middle.count))
        crc = crc32_combine(crc, tailCRC, off_t(tailLength))
        trailer.writeInteger(UInt32(truncatingIfNeeded: crc), endianness: .little)
        trailer.writeInteger(UInt32(truncatingIfNeeded: headLength + middle.count + tailLength), endianness: .little)
        return [head, block, tail, trailer]
    }

    private static func crc(_ bytes: [UInt8]) -> UInt {
        bytes.withUnsafeBufferPointer { crc32_z(0, $0.baseAddress, $0.count) }
    }

    private static func deflate(_ bytes: [UInt8], finish: Bool) throws -> ByteBuffer {
        let compressor = try ZlibCompressor(algorithm: .deflate)
        var input = ByteBuffer(bytes: bytes)
        var output = ByteBuffer()
        output.reserveCapacity(compressor.maxSize(from: input))
        try compressor.deflate(from: &input, to: &output, flush: finish ? .finish : .sync)
        return output
    }
}
