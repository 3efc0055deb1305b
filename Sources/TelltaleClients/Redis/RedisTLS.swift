import COpenSSL
import Glibc
import Synchronization
import TelltaleCore

/// Owns one OpenSSL `SSL_CTX` built from `RedisTLSSettings` and frees it exactly once, in
/// `deinit`. Built once per client (not per connection), on the client's own thread: it
/// reads the CA, certificate and key files.
///
/// Unchecked `Sendable`: the context is only read after `init` (OpenSSL allows sharing an
/// `SSL_CTX` between threads as long as nobody changes it), and `SSL_new` holds its own
/// reference to it, so a connection may outlive this owner.
package final class RedisTLSContext: @unchecked Sendable {
    package let settings: RedisTLSSettings
    let context: OpaquePointer

    /// PEM files bigger than this are a mistake (a system CA bundle is about 200 KiB).
    package static let fileLimit = 4 << 20

    /// A file named by the settings that cannot be used: the key (`ca_file`…), the path and
    /// why, never the file's content.
    package struct FileProblem: Error, Sendable, CustomStringConvertible {
        package let key: String
        package let reason: String
        package var description: String { key.isEmpty ? "tls: \(reason)" : "tls.\(key): \(reason)" }
    }

    /// Reads the files and builds the context; a problem names the file's key.
    package static func make(_ settings: RedisTLSSettings) -> Result<RedisTLSContext, FileProblem> {
        Result { () throws(FileProblem) in try RedisTLSContext(settings: settings) }
    }

    /// Reads the files and builds the context; the error (kind `.connect`) names the file's key.
    package convenience init(_ settings: RedisTLSSettings) throws(RedisError) {
        do {
            try self.init(settings: settings)
        } catch {
            throw RedisError(kind: .connect, message: "cannot set up TLS: \(error)")
        }
    }

    private init(settings: RedisTLSSettings) throws(FileProblem) {
        OpenSSLErrors.clear()
        guard let context = SSL_CTX_new(TLS_client_method()) else {
            throw FileProblem(key: "", reason: "OpenSSL could not make a context: \(OpenSSLErrors.drain())")
        }
        self.context = context
        self.settings = settings
        // From here `deinit` frees the context whatever fails below.
        guard telltale_ssl_ctx_set_min_tls12(context) == 1 else {
            throw FileProblem(key: "", reason: "OpenSSL refused TLS 1.2 as the minimum: \(OpenSSLErrors.drain())")
        }
        telltale_ssl_ctx_set_modes(context)
        SSL_CTX_set_default_passwd_cb(context, telltale_no_password)
        SSL_CTX_set_verify(context, settings.insecureSkipVerify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nil)
        if let caFile = settings.caFile {
            try loadAuthorities(caFile)
        } else if SSL_CTX_set_default_verify_paths(context) != 1 {
            throw FileProblem(key: "ca_file", reason: "the system's CA store cannot be used: \(OpenSSLErrors.drain())")
        }
        switch (settings.certFile, settings.keyFile) {
        case (let certFile?, let keyFile?):
            try loadCertificate(certFile)
            try loadKey(keyFile)
            guard SSL_CTX_check_private_key(context) == 1 else {
                OpenSSLErrors.clear()
                throw FileProblem(key: "key_file", reason: "\(keyFile) is not the key of tls.cert_file's certificate")
            }
        case (.some, nil):
            throw FileProblem(key: "key_file", reason: "needed with cert_file")
        case (nil, .some):
            throw FileProblem(key: "cert_file", reason: "needed with key_file")
        case (nil, nil):
            // Notes a server's request for one, so that its refusal can be explained.
            SSL_CTX_set_client_cert_cb(context, telltale_client_certificate_requested)
        }
    }

    deinit {
        SSL_CTX_free(context)
    }

    private static func read(_ key: String, _ path: String) throws(FileProblem) -> [UInt8] {
        switch BoundedFile.readBytes(path, limit: fileLimit) {
        case .success(let bytes): return bytes
        case .failure(let problem): throw FileProblem(key: key, reason: problem.description)
        }
    }

    /// Every PEM certificate of the file, into the context's trust store.
    private func loadAuthorities(_ path: String) throws(FileProblem) {
        let bytes = try Self.read("ca_file", path)
        let store = SSL_CTX_get_cert_store(context)
        let added = try PEMReader.each(bytes, key: "ca_file", path: path) { certificate in
            // A certificate given twice is not a problem.
            _ = X509_STORE_add_cert(store, certificate)
            OpenSSLErrors.clear()
        }
        guard added > 0 else { throw FileProblem(key: "ca_file", reason: "no PEM certificate in \(path)") }
    }

    /// The client certificate, then any intermediate certificates that follow it.
    private func loadCertificate(_ path: String) throws(FileProblem) {
        let bytes = try Self.read("cert_file", path)
        var failure: FileProblem?
        let count = try PEMReader.each(bytes, key: "cert_file", path: path) { certificate in
            if failure != nil { return }
            if SSL_CTX_get0_certificate(context) == nil {
                if SSL_CTX_use_certificate(context, certificate) != 1 {
                    failure = FileProblem(key: "cert_file", reason: "\(path): \(OpenSSLErrors.drain())")
                }
            } else if X509_up_ref(certificate) == 1 {
                // The chain takes the reference just added, unless it refuses the certificate.
                if telltale_ssl_ctx_add_chain_cert(context, certificate) != 1 {
                    X509_free(certificate)
                    failure = FileProblem(key: "cert_file", reason: "\(path): \(OpenSSLErrors.drain())")
                }
            }
        }
        if let failure { throw failure }
        guard count > 0 else { throw FileProblem(key: "cert_file", reason: "no PEM certificate in \(path)") }
    }

    private func loadKey(_ path: String) throws(FileProblem) {
        let bytes = try Self.read("key_file", path)
        let key: OpaquePointer? = bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(clamping: raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, telltale_no_password, nil)
        }
        guard let key else {
            // OpenSSL's reasons never quote the key.
            throw FileProblem(key: "key_file", reason: "no usable PEM private key in \(path) (an encrypted key is not supported): \(OpenSSLErrors.drain())")
        }
        defer { EVP_PKEY_free(key) }
        guard SSL_CTX_use_PrivateKey(context, key) == 1 else {
            let reason = OpenSSLErrors.drain()
            if reason.contains("key values mismatch") {
                throw FileProblem(key: "key_file", reason: "\(path) is not the key of tls.cert_file's certificate")
            }
            throw FileProblem(key: "key_file", reason: "\(path): \(reason)")
        }
    }
}

/// The TLS contexts of one client, each built at its first use (on the client's thread: it
/// reads files) and kept for every later connection: one per distinct settings (the
/// server's; the Sentinels', which may differ). A failed build is tried again next time.
package final class RedisTLSContexts: Sendable {
    private let built = Mutex<[RedisTLSSettings: RedisTLSContext]>([:])

    package init() {}

    /// The context for `settings`, nil without TLS.
    package func context(for settings: RedisTLSSettings?) throws(RedisError) -> RedisTLSContext? {
        guard let settings else { return nil }
        if let context = built.withLock({ $0[settings] }) { return context }
        let context = try RedisTLSContext(settings)
        return built.withLock { built in
            if let existing = built[settings] { return existing }
            built[settings] = context
            return context
        }
    }
}

/// Certificates of a PEM file, one by one.
private enum PEMReader {
    /// Calls `body` with each certificate (freed after the call); the number read. Stops at
    /// the end of the data; a malformed certificate is a problem.
    static func each(_ bytes: [UInt8], key: String, path: String,
                     _ body: (OpaquePointer) -> Void) throws(RedisTLSContext.FileProblem) -> Int {
        var count = 0
        let failure: String? = bytes.withUnsafeBytes { raw in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(clamping: raw.count)) else { return "out of memory" }
            defer { BIO_free(bio) }
            OpenSSLErrors.clear()
            while true {
                guard let certificate = PEM_read_bio_X509(bio, nil, telltale_no_password, nil) else {
                    // The end of the data reads as "no start line"; anything else is a bad certificate.
                    let last = ERR_peek_last_error()
                    if last == 0 || (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
                        OpenSSLErrors.clear()
                        return nil
                    }
                    return OpenSSLErrors.drain()
                }
                body(certificate)
                X509_free(certificate)
                count += 1
            }
        }
        if let failure { throw RedisTLSContext.FileProblem(key: key, reason: "\(path): \(failure)") }
        return count
    }
}

/// OpenSSL's per-thread error queue.
enum OpenSSLErrors {
    static func clear() {
        ERR_clear_error()
    }

    /// The reasons in the queue, oldest first, joined; the queue is left empty.
    static func drain() -> String {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            let text: String
            if let reason = ERR_reason_error_string(code) {
                text = String(cString: reason)
            } else {
                var buffer = [CChar](repeating: 0, count: 256)
                ERR_error_string_n(code, &buffer, buffer.count)
                text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
            if !reasons.contains(text) { reasons.append(text) }
        }
        return reasons.isEmpty ? "unknown error" : reasons.joined(separator: "; ")
    }
}

/// OpenSSL's reading and writing on a socket Telltale owns, made once for the process and
/// never changed after (so shared by every thread), never freed.
nonisolated(unsafe) private let socketMethod: OpaquePointer? = telltale_bio_method_new()

/// Owns one OpenSSL `SSL` (and through it the BIO on the socket) and frees it exactly once,
/// in `deinit`. The socket itself stays with its `RedisSocket`.
final class RedisTLSSession {
    let ssl: OpaquePointer

    /// A client session on `fd` that verifies `serverName` (or, unverified, sends it as SNI).
    init(context: RedisTLSContext, fd: Int32, serverName: String?, endpoint: RedisEndpoint) throws(RedisError) {
        OpenSSLErrors.clear()
        guard let ssl = SSL_new(context.context) else {
            throw RedisError(kind: .connect, message: "OpenSSL could not make a session: \(OpenSSLErrors.drain())")
        }
        self.ssl = ssl
        guard let socketMethod, let bio = telltale_bio_new(socketMethod, fd) else {
            throw RedisError(kind: .connect, message: "OpenSSL could not wrap the socket: \(OpenSSLErrors.drain())")
        }
        // The session owns the BIO from here (one reference for both directions).
        SSL_set_bio(ssl, bio, bio)
        let isAddress = serverName.map(Self.isIPAddress) ?? false
        if !context.settings.insecureSkipVerify {
            guard let serverName else {
                throw RedisError(kind: .connect, message: "TLS to \(endpoint) needs tls.server_name: the name to verify the certificate against")
            }
            let set = isAddress ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName)
                                : SSL_set1_host(ssl, serverName)
            guard set == 1 else {
                throw RedisError(kind: .connect, message: "TLS to \(endpoint): cannot verify against \"\(serverName)\": \(OpenSSLErrors.drain())")
            }
            if !isAddress { SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS)) }
        }
        // SNI carries a host name, never an address (RFC 6066).
        if let serverName, !isAddress, telltale_ssl_set_sni(ssl, serverName) != 1 {
            throw RedisError(kind: .connect, message: "TLS to \(endpoint): invalid server name \"\(serverName)\": \(OpenSSLErrors.drain())")
        }
    }

    deinit {
        SSL_free(ssl)
    }

    private static func isIPAddress(_ name: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, name, &v4) == 1 || inet_pton(AF_INET6, name, &v6) == 1
    }

    /// The handshake, certificate and host name verification included, by `deadline`.
    func handshake(on socket: RedisSocket, until deadline: Deadline, timeout: Duration, endpoint: RedisEndpoint) throws(RedisError) {
        while true {
            OpenSSLErrors.clear()
            errno = 0
            let result = SSL_connect(ssl)
            if result == 1 { return }
            let error = SSL_get_error(ssl, result)
            let events: Int16
            switch error {
            case SSL_ERROR_WANT_READ: events = Int16(POLLIN)
            case SSL_ERROR_WANT_WRITE: events = Int16(POLLOUT)
            default: throw handshakeFailure(error, result: result, endpoint: endpoint)
            }
            switch socket.wait(for: events, until: deadline) {
            case .ready: continue
            case .timedOut:
                throw RedisError(kind: .connect, message: "TLS handshake with \(endpoint) timed out after \(timeout)"
                                     + " (no TLS server answered: is this a plain-TCP port?)")
            case .failed(let reason):
                throw RedisError(kind: .connect, message: "TLS handshake with \(endpoint) failed: \(reason)")
            }
        }
    }

    private func handshakeFailure(_ error: Int32, result: Int32, endpoint: RedisEndpoint) -> RedisError {
        let systemError = errno
        var reason: String
        if error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 {
            reason = systemError == 0 ? "the server closed the connection" : String(cString: strerror(systemError))
        } else {
            reason = OpenSSLErrors.drain()
        }
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            reason += " (\(String(cString: X509_verify_cert_error_string(verify))))"
        }
        if reason.contains("wrong version number") || reason.contains("packet length too long") {
            reason += " (is this a plain-TCP port? TLS is on for it: rediss:// or a tls: block)"
        } else if let hint = clientCertificateHint {
            reason += hint
        }
        return RedisError(kind: .connect, message: "TLS handshake with \(endpoint) failed: \(reason)")
    }

    /// Why a server may drop the connection right after the handshake: with TLS 1.3 it
    /// checks the client's certificate only then, and Redis closes without an alert.
    var clientCertificateHint: String? {
        telltale_client_certificate_was_requested(ssl) == 1
            ? " (the server asked for a client certificate and none is configured: set tls.cert_file and tls.key_file)"
            : nil
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> Result<TransportStep, RedisError> {
        OpenSSLErrors.clear()
        errno = 0
        let result = SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count))
        if result > 0 { return .success(.transferred(Int(result))) }
        return step(after: result)
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> Result<TransportStep, RedisError> {
        OpenSSLErrors.clear()
        errno = 0
        // A retried write must repeat the same length: the caller repeats the same bytes,
        // and this cap keeps the length the same.
        let result = SSL_write(ssl, bytes.baseAddress, Int32(clamping: min(bytes.count, 1 << 20)))
        if result > 0 { return .success(.transferred(Int(result))) }
        return step(after: result)
    }

    private func step(after result: Int32) -> Result<TransportStep, RedisError> {
        let systemError = errno
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ: return .success(.wants(Int16(POLLIN)))
        case SSL_ERROR_WANT_WRITE: return .success(.wants(Int16(POLLOUT)))
        case SSL_ERROR_ZERO_RETURN: return .success(.closed("the server closed the connection"))
        case SSL_ERROR_SYSCALL where ERR_peek_error() == 0:
            if systemError == 0 { return .success(.closed("the server closed the connection")) }
            return .failure(RedisError(kind: .connection, message: String(cString: strerror(systemError))))
        default:
            let reason = OpenSSLErrors.drain()
            if reason.contains("unexpected eof") { return .success(.closed("the server closed the connection")) }
            return .failure(RedisError(kind: .connection, message: "TLS: \(reason)"))
        }
    }
}
