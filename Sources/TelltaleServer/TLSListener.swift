import Glibc
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import Synchronization
import TelltaleCore
import TelltaleMetrics

/// The certificate, key and client CA of the listener, loaded into a TLS context.
struct TLSMaterial: Sendable {
    let context: NIOSSLContext
    /// Whether client certificates are accepted without checking them against a CA
    /// (`RequestClientCert`, `RequireAnyClientCert`).
    let acceptsAnyClientCertificate: Bool
    /// What the files were when read: a change of any of them means reading them again.
    let stamps: [FileStamp]

    /// Certificates and keys are small: anything larger is not one.
    static let maxFileSize = 1 << 20

    struct LoadError: Error, CustomStringConvertible {
        let description: String
    }

    /// Reads the files (blocking: call off the event loops and the cooperative pool).
    static func load(_ settings: TLSServerSettings) throws(LoadError) -> TLSMaterial {
        let stamps = settings.files.map(FileStamp.init)
        let chain = try certificates(settings.certFile, key: "cert_file")
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: try bytes(settings.keyFile, key: "key_file"), format: .pem)
        } catch let error as LoadError {
            throw error
        } catch {
            throw LoadError(description: "key_file: \(settings.keyFile) holds no PEM private key Telltale can read")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                    privateKey: .privateKey(key))
        configuration.minimumTLSVersion = settings.minVersion
        configuration.maximumTLSVersion = settings.maxVersion
        configuration.certificateVerification = verification(settings.clientAuth)
        if let caFile = settings.clientCAFile {
            configuration.trustRoots = .certificates(try certificates(caFile, key: "client_ca_file"))
        }
        do {
            return TLSMaterial(context: try NIOSSLContext(configuration: configuration),
                               acceptsAnyClientCertificate: [.requestClientCert, .requireAnyClientCert].contains(settings.clientAuth),
                               stamps: stamps)
        } catch {
            throw LoadError(description: "key_file: \(settings.keyFile) does not match the certificate of cert_file \(settings.certFile)")
        }
    }

    /// The same material, as if its files had been read when they were `stamps`.
    func restamped(_ stamps: [FileStamp]) -> TLSMaterial {
        TLSMaterial(context: context, acceptsAnyClientCertificate: acceptsAnyClientCertificate, stamps: stamps)
    }

    private static func verification(_ auth: TLSServerSettings.ClientAuth) -> CertificateVerification {
        switch auth {
        case .noClientCert: .none
        case .requestClientCert, .verifyClientCertIfGiven: .optionalVerification
        case .requireAnyClientCert, .requireAndVerifyClientCert: .noHostnameVerification
        }
    }

    private static func bytes(_ path: String, key: String) throws(LoadError) -> [UInt8] {
        switch BoundedFile.readBytes(path, limit: maxFileSize) {
        case .success(let bytes): return bytes
        case .failure(let problem): throw LoadError(description: "\(key): \(problem)")
        }
    }

    private static func certificates(_ path: String, key: String) throws(LoadError) -> [NIOSSLCertificate] {
        let pem = try bytes(path, key: key)
        guard let chain = try? NIOSSLCertificate.fromPEMBytes(pem), !chain.isEmpty else {
            throw LoadError(description: "\(key): \(path) holds no PEM certificate")
        }
        return chain
    }
}

/// The listener's TLS material, read again when a file changes: certificate rotation needs
/// no restart. A replacement that fails to load is logged and counted, and the previous
/// material goes on being served. Files are looked at every `checkInterval` from a blocking
/// thread, never from an event loop.
package final class TLSReloader: Sendable {
    package static let reloadErrors = MetricDescriptor(
        "telltale_tls_reload_errors", .counter,
        help: "Changed TLS certificate, key or client CA files that could not be loaded (the previous ones stay in use).")
    package static let lastReload = MetricDescriptor(
        "telltale_tls_last_reload_success_timestamp_seconds", .gauge,
        help: "Unix time the listener's TLS material was last loaded.", unit: "seconds")
    static let checkInterval = Duration.seconds(1)

    private struct State {
        var settings: TLSServerSettings
        var material: TLSMaterial
        var errors = 0.0
        var loadedAt = UnixTime.now.seconds
    }

    private let state: Mutex<State>
    private let logger: Logger

    package init(settings: TLSServerSettings, logger: Logger) throws(ConfigErrors) {
        do {
            state = Mutex(State(settings: settings, material: try TLSMaterial.load(settings)))
        } catch {
            throw ConfigErrors(problems: ["tls_server_config: \(error.description)"])
        }
        self.logger = logger
    }

    var current: TLSMaterial { state.withLock { $0.material } }

    /// New file names from a reloaded web configuration: loaded at the next check.
    package func use(_ settings: TLSServerSettings) {
        state.withLock { state in
            guard state.settings != settings else { return }
            state.settings = settings
            state.material = state.material.restamped([])
        }
    }

    /// Checks the files every `checkInterval` until cancelled.
    package func watch() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: Self.checkInterval) } catch { return }
            await reloadIfChanged()
        }
    }

    func reloadIfChanged() async {
        let (settings, stamps) = state.withLock { ($0.settings, $0.material.stamps) }
        let outcome = await BlockingIO.run(within: .seconds(10)) { () -> Result<TLSMaterial, TLSMaterial.LoadError>? in
            guard settings.files.map(FileStamp.init) != stamps else { return nil }
            return Result { () throws(TLSMaterial.LoadError) in try TLSMaterial.load(settings) }
        }
        switch outcome {
        case .some(.some(.success(let material))):
            state.withLock { state in
                state.material = material
                state.loadedAt = UnixTime.now.seconds
            }
            logger.info("TLS certificate and key loaded again", metadata: ["cert_file": "\(settings.certFile)"])
        case .some(.some(.failure(let error))):
            // Stamped as read, so that one broken replacement is reported once, not every second.
            state.withLock { state in
                state.errors += 1
                state.material = state.material.restamped(settings.files.map(FileStamp.init))
            }
            logger.error("changed TLS files could not be loaded; the previous certificate stays in use",
                         metadata: ["problem": "\(error.description)"])
        case .some(.none), .none:
            break
        }
    }

    package var families: [MetricFamily] {
        state.withLock { state in
            var errors = FamilyBuilder(Self.reloadErrors)
            errors.add(state.errors)
            var loaded = FamilyBuilder(Self.lastReload)
            loaded.set(state.loadedAt)
            return [errors.build(), loaded.build()]
        }
    }
}

/// An HTTP/1 child channel behind TLS, with the reloader's current context for each new
/// connection (Hummingbird's `TLSChannel` keeps one context for the server's life).
struct ReloadingTLSChannel<BaseChannel: ServerChildChannel>: ServerChildChannel {
    typealias Value = BaseChannel.Value

    let base: BaseChannel
    let tls: TLSReloader

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let material = tls.current
        // RequestClientCert and RequireAnyClientCert take any certificate, as Go's TLS does.
        let acceptAny: NIOSSLCustomVerificationCallback? = material.acceptsAnyClientCertificate
            ? { _, promise in promise.succeed(.certificateVerified) } : nil
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
                NIOSSLServerHandler(context: material.context, customVerificationCallback: acceptAny, configuration: .init()))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

extension ReloadingTLSChannel: HTTPChannelHandler where BaseChannel: HTTPChannelHandler {
    var responder: HTTPChannelHandler.Responder { base.responder }
}

extension HTTPServerBuilder {
    /// HTTP/1 behind TLS whose material `reloader` keeps current.
    package static func http1(configuration: HTTP1Channel.Configuration, tls reloader: TLSReloader) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            ReloadingTLSChannel(base: HTTP1Channel(responder: responder, configuration: configuration), tls: reloader)
        }
    }
}

/// Watches the TLS files until shutdown.
package struct TLSWatch: Service {
    package let tls: TLSReloader

    package init(tls: TLSReloader) {
        self.tls = tls
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown { await tls.watch() }
    }
}
