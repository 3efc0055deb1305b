import Glibc
import TelltaleMetrics

/// Reads small files named by configuration or by table rows: secrets, the configuration.
///
/// Only regular files, up to a size cap, opened without blocking: `/dev/zero` would exhaust
/// memory, a FIFO would block `open` (and then every read) until a writer came, and a
/// terminal would become the controlling one. The reasons name the path, never the content.
package enum BoundedFile {
    /// Secrets (tokens, URLs, DSNs) are short: anything longer is a mistake.
    package static let secretLimit = 64 << 10

    package static func read(_ path: String, limit: Int) -> Result<String, FileProblem> {
        readBytes(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
    }

    package static func readBytes(_ path: String, limit: Int) -> Result<[UInt8], FileProblem> {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return .failure(FileProblem("cannot open \(path): \(String(cString: strerror(errno)))")) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .failure(FileProblem("cannot stat \(path)")) }
        guard info.st_mode & S_IFMT == S_IFREG else { return .failure(FileProblem("\(path) is not a regular file")) }
        guard info.st_size <= limit else { return .failure(FileProblem("\(path) is larger than \(limit) bytes")) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        // The size may change between fstat and read: the cap is checked on what is read.
        while bytes.count <= limit {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 { return .failure(FileProblem("cannot read \(path): \(String(cString: strerror(errno)))")) }
            if count == 0 { return .success(bytes) }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return .failure(FileProblem("\(path) is larger than \(limit) bytes"))
    }

    /// A secret file's content without its trailing line break.
    package static func readSecret(_ path: String) -> Result<String, FileProblem> {
        read(path, limit: secretLimit).map { text in
            var text = text
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            return text
        }
    }
}

package struct FileProblem: Error, Sendable, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
