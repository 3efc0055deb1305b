import Glibc

/// What identifies a file's content cheaply: a replaced or rewritten file changes one of these.
package struct FileStamp: Sendable, Hashable {
    let path: String
    let device: UInt64
    let inode: UInt64
    let size: Int64
    let modified: Int64
    let modifiedNanoseconds: Int

    package init(_ path: String) {
        var info = stat()
        let found = stat(path, &info) == 0
        self.path = path
        device = found ? UInt64(info.st_dev) : 0
        inode = found ? UInt64(info.st_ino) : 0
        size = found ? Int64(info.st_size) : -1
        modified = found ? Int64(info.st_mtim.tv_sec) : 0
        modifiedNanoseconds = found ? Int(info.st_mtim.tv_nsec) : 0
    }
}
