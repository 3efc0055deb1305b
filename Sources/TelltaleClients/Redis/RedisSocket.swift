import Glibc
import TelltaleCore

/// Owns one connected, non-blocking stream socket and closes it exactly once, in `deinit`.
///
/// Used only from the owning `RedisClient`'s thread (every call here may block up to its
/// timeout), which is what makes the unchecked `Sendable` of its owners sound.
final class RedisSocket {
    let fd: Int32

    private init(fd: Int32) {
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    /// Connects to `endpoint`: a host name or address (every address `getaddrinfo` gives, in
    /// its order, each within `timeout`), or a unix socket.
    static func connect(to endpoint: RedisEndpoint, timeout: Duration) throws(RedisError) -> RedisSocket {
        switch endpoint {
        case .tcp(let host, let port):
            return try connectTCP(host: host, port: port, timeout: timeout, endpoint: endpoint)
        case .unix(let path):
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let capacity = MemoryLayout.size(ofValue: address.sun_path)
            let bytes = Array(path.utf8)
            guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else {
                throw RedisError(kind: .connect, message: "cannot connect to \(endpoint): the socket path is longer than \(capacity - 1) bytes")
            }
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
            return try withUnsafeBytes(of: &address) { raw throws(RedisError) in
                try attempt(family: AF_UNIX, address: raw.baseAddress!.assumingMemoryBound(to: sockaddr.self),
                            length: socklen_t(MemoryLayout<sockaddr_un>.size), timeout: timeout)
                    .get(endpoint: endpoint)
            }
        }
    }

    private static func connectTCP(host: String, port: Int, timeout: Duration, endpoint: RedisEndpoint) throws(RedisError) -> RedisSocket {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let list else {
            let reason = status == EAI_SYSTEM ? String(cString: strerror(errno)) : String(cString: gai_strerror(status))
            throw RedisError(kind: .connect, message: "cannot resolve \(host): \(reason)")
        }
        defer { freeaddrinfo(list) }
        var failure = Attempt.failed("no address")
        var next: UnsafeMutablePointer<addrinfo>? = list
        while let info = next {
            next = info.pointee.ai_next
            guard let address = info.pointee.ai_addr else { continue }
            failure = attempt(family: info.pointee.ai_family, address: address, length: info.pointee.ai_addrlen, timeout: timeout)
            if case .connected(let socket) = failure {
                var on: Int32 = 1
                // Commands go out as soon as they are written, as hiredis set it.
                setsockopt(socket.fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
                return socket
            }
        }
        return try failure.get(endpoint: endpoint)
    }

    private enum Attempt {
        case connected(RedisSocket)
        case failed(String)

        func get(endpoint: RedisEndpoint) throws(RedisError) -> RedisSocket {
            switch self {
            case .connected(let socket): return socket
            case .failed(let reason): throw RedisError(kind: .connect, message: "cannot connect to \(endpoint): \(reason)")
            }
        }
    }

    private static func attempt(family: Int32, address: UnsafePointer<sockaddr>, length: socklen_t, timeout: Duration) -> Attempt {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return .failed(String(cString: strerror(errno))) }
        let owned = RedisSocket(fd: fd)
        if Glibc.connect(fd, address, length) == 0 { return .connected(owned) }
        // Only EINPROGRESS completes later: a unix socket's EAGAIN is a full backlog, a failure.
        guard errno == EINPROGRESS else { return .failed(String(cString: strerror(errno))) }
        let deadline = Deadline(after: timeout)
        switch owned.wait(for: Int16(POLLOUT), until: deadline) {
        case .ready: break
        case .timedOut: return .failed("timed out after \(timeout)")
        case .failed(let reason): return .failed(reason)
        }
        var error: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 else { return .failed(String(cString: strerror(errno))) }
        return error == 0 ? .connected(owned) : .failed(String(cString: strerror(error)))
    }

    enum Readiness: Equatable {
        case ready
        case timedOut
        case failed(String)
    }

    /// Waits until the socket is ready for `events` (POLLIN, POLLOUT), or the deadline.
    /// Readiness includes an error or hang-up: the next read or write reports it.
    func wait(for events: Int16, until deadline: Deadline) -> Readiness {
        while true {
            let remaining = deadline.remainingMilliseconds
            if remaining <= 0 { return .timedOut }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, remaining)
            if ready > 0 { return .ready }
            if ready == 0 { continue }  // loops to the deadline check: poll may wake a little early
            if errno == EINTR { continue }
            return .failed(String(cString: strerror(errno)))
        }
    }
}

/// A point in time on the monotonic clock.
struct Deadline {
    private let nanoseconds: Int64

    init(after duration: Duration) {
        let (seconds, attoseconds) = duration.components
        // Saturating: an absurd timeout waits "forever", it does not trap.
        var total = Int64.max
        let span = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if !span.overflow {
            let sum = span.partialValue.addingReportingOverflow(attoseconds / 1_000_000_000)
            if !sum.overflow { total = sum.partialValue }
        }
        let end = Self.now().addingReportingOverflow(total)
        nanoseconds = end.overflow ? Int64.max : end.partialValue
    }

    /// Whichever of the two comes first.
    func earlier(_ other: Deadline) -> Deadline { nanoseconds <= other.nanoseconds ? self : other }

    /// Milliseconds left, rounded up, at most `Int32.max`; 0 or less once passed.
    var remainingMilliseconds: Int32 {
        let (left, overflow) = nanoseconds.subtractingReportingOverflow(Self.now())
        if overflow || left <= 0 { return 0 }
        return Int32(clamping: left / 1_000_000 + (left % 1_000_000 == 0 ? 0 : 1))
    }

    private static func now() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
    }
}
