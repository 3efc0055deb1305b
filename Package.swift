// swift-tools-version:6.2
import PackageDescription

// Every target builds in Swift 6 language mode with strict concurrency checking. A file sees
// the members of the modules it imports, not of every module its target imports: otherwise a
// `String.contains` in a file without Foundation resolves to Foundation's, which bridges to
// CoreFoundation (its code and Unicode tables) on every call.
let strict: [SwiftSetting] = [.swiftLanguageMode(.v6), .enableUpcomingFeature("MemberImportVisibility")]

let package = Package(
    name: "telltale",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "telltale", targets: ["telltale"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        // Already in the graph through Hummingbird; named for the HTTP part types of the
        // event-loop /metrics handler.
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        // TLS on the listener (--web.config.file), as Hummingbird's TLS module does it.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // C libraries from Debian, imported through module maps.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // No pkgConfig: hiredis.pc carries a -D flag that SwiftPM rejects.
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        // TLS to Redis: Debian 12's hiredis 0.14 has none, so Telltale owns the transport and
        // wraps it in OpenSSL (which libpq and libcurl link already).
        .systemLibrary(name: "COpenSSL", providers: [.apt(["libssl-dev"])]),
        // Rule matchers' regular expressions: PCRE2 with match and depth limits, so a
        // pattern's cost is bounded (Swift's Regex backtracks without any limit).
        .systemLibrary(name: "CPCRE2", providers: [.apt(["libpcre2-dev"])]),
        .systemLibrary(name: "CGlibcExtras"),
        // bcrypt for the web configuration's basic_auth_users: libxcrypt's crypt_r, the
        // audited implementation Debian ships (libcrypt-dev), rather than one of our own.
        .systemLibrary(name: "CCrypt", providers: [.apt(["libcrypt-dev"])]),

        // Metric model and exposition encoders: pure, no I/O.
        .target(name: "TelltaleMetrics", swiftSettings: strict),

        // The layers below, each a target so that the compiler refuses a back-edge:
        // core → clients → collectors → alerting → server → app → CLI.

        // Collector protocol, scheduler, store, configuration reader and support helpers.
        .target(
            name: "TelltaleCore",
            dependencies: [
                "TelltaleMetrics",
                "CZlib",
                "CPCRE2",
                "CGlibcExtras",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: strict
        ),

        // The owners of the C handles: libpq, hiredis (its reply reader), OpenSSL and libcurl.
        .target(
            name: "TelltaleClients",
            dependencies: ["TelltaleCore", "CLibPQ", "CHiredis", "COpenSSL", "CCurl"],
            swiftSettings: strict
        ),

        // One folder per source: its configuration section, collectors and registration.
        .target(name: "TelltaleCollectors", dependencies: ["TelltaleClients"], swiftSettings: strict),

        // Rules, evaluation, leadership, the outbox and delivery.
        .target(name: "TelltaleAlerting", dependencies: ["TelltaleClients"], swiftSettings: strict),

        // HTTP endpoints, connection limits and the status page.
        .target(
            name: "TelltaleServer",
            dependencies: [
                "TelltaleAlerting",
                "CCrypt",
                "COpenSSL",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // The whole configuration and the wiring of collectors, store, alerting and server.
        .target(
            name: "Telltale",
            dependencies: [
                "TelltaleCollectors",
                "TelltaleServer",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // The thin command-line front end.
        .executableTarget(
            name: "telltale",
            dependencies: [
                "Telltale",
                "TelltaleAlerting",
                "TelltaleCore",
                "TelltaleServer",
                "CGlibcExtras",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),

        // Fuzz targets: a corpus replayer in normal builds, libFuzzer targets when built by
        // scripts/fuzz.sh with -sanitize=fuzzer -DFUZZING.
        .executableTarget(
            name: "telltale-fuzz",
            dependencies: ["Telltale", "TelltaleAlerting", "TelltaleClients", "TelltaleCollectors", "TelltaleCore", "CHiredis"],
            path: "Fuzz/Sources",
            swiftSettings: strict
        ),

        .testTarget(name: "TelltaleMetricsTests", dependencies: ["TelltaleMetrics"],
                    resources: [.copy("Golden")], swiftSettings: strict),
        .testTarget(
            name: "TelltaleTests",
            dependencies: ["Telltale", "TelltaleAlerting", "TelltaleClients", "TelltaleCollectors", "TelltaleCore", "TelltaleServer"],
            swiftSettings: strict),
    ]
)
