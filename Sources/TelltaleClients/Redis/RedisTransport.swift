import Glibc
import TelltaleCore

/// What one read or write on a transport did.
enum TransportStep {
    case transferred(Int)
    /// It would block until the socket is ready for these poll events (TLS may need to
    /// read in order to write, or the other way round).
    case wants(Int16)
    case closed(String)
}

/// A connection's bytes: a socket, optionally wrapped in TLS. Plain and TLS share every
/// step but the read and write calls themselves.
final class RedisTransport {
    let endpoint: RedisEndpoint
    // The TLS session first: it is freed before the socket whose descriptor it wrote to.
    private let session: RedisTLSSession?
    private let socket: RedisSocket

    /// Connects (within `connectTimeout` per address), then, with `tls`, completes the
    /// handshake (within `connectTimeout` again).
    init(endpoint: RedisEndpoint, connectTimeout: Duration, tls: RedisTLSContext?) throws(RedisError) {
        self.endpoint = endpoint
        socket = try RedisSocket.connect(to: endpoint, timeout: connectTimeout)
        guard let tls else {
            session = nil
            return
        }
        let serverName: String? = switch endpoint {
        case .tcp(let host, _): tls.settings.serverName ?? host
        case .unix: tls.settings.serverName
        }
        let session = try RedisTLSSession(context: tls, fd: socket.fd, serverName: serverName, endpoint: endpoint)
        try session.handshake(on: socket, until: Deadline(after: connectTimeout), timeout: connectTimeout, endpoint: endpoint)
        self.session = session
    }

    var isTLS: Bool { session != nil }

    /// What may explain a connection dropped before Redis said anything.
    var hintBeforeFirstReply: String? {
        guard let session else { return " (does it require TLS? use rediss:// or a tls: block)" }
        return session.clientCertificateHint
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(RedisError) -> TransportStep {
        if let session { return try session.read(into: buffer).get() }
        while true {
            let received = recv(socket.fd, buffer.baseAddress, buffer.count, 0)
            if received > 0 { return .transferred(received) }
            if received == 0 { return .closed("the server closed the connection") }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wants(Int16(POLLIN))
            default: throw RedisError(kind: .connection, message: String(cString: strerror(errno)))
            }
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(RedisError) -> TransportStep {
        if let session { return try session.write(bytes).get() }
        while true {
            // MSG_NOSIGNAL: a peer gone away is EPIPE, not a SIGPIPE that ends the process.
            let sent = send(socket.fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if sent >= 0 { return .transferred(sent) }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wants(Int16(POLLOUT))
            default: throw RedisError(kind: .connection, message: String(cString: strerror(errno)))
            }
        }
    }

    func wait(for events: Int16, until deadline: Deadline) -> RedisSocket.Readiness {
        socket.wait(for: events, until: deadline)
    }
}
