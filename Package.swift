// swift-tools-version:6.2
import PackageDescription

// Our targets only (dependencies build with their own settings): a warning fails the build, so a clean
// build and an incremental one both stay warning-free (scripts/check-boundaries checks every target has it).
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "maestro",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "maestro", targets: ["maestro"]),
        // For fuzz/ (libFuzzer builds link only what they test).
        .library(name: "MaestroFuzzTargets", targets: ["MaestroFuzzTargets"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // Tracing: Core and the libraries see only the API; only the executable links the exporter, and only its
        // OTLP/HTTP trait (the OTLP/gRPC one is not needed: one exporter is enough, and it keeps the build shorter).
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // System libraries: a module map and a shim header each (Lua's macros, curl's variadic calls).
        .systemLibrary(name: "CLua", pkgConfig: "lua5.4", providers: [.apt(["liblua5.4-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CLibYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),

        // Pure Swift value tree and JSON shared by every layer.
        .target(name: "MaestroValue", swiftSettings: swiftSettings),

        // One safe wrapper per C library; C types never leave these modules.
        .target(name: "MaestroYAML", dependencies: ["CLibYAML", "MaestroValue"], swiftSettings: swiftSettings),
        .target(name: "MaestroRedis", dependencies: ["CHiredis", "MaestroValue", .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: swiftSettings),
        .target(name: "MaestroHTTP", dependencies: ["CCurl"], swiftSettings: swiftSettings),
        .target(
            name: "MaestroLua",
            dependencies: ["CLua", "MaestroValue", "MaestroYAML", .product(name: "Logging", package: "swift-log")],
            // The sandbox's own Lua, compiled in through Generated/EmbeddedLua.swift (scripts/generate-lua).
            exclude: ["lua"],
            swiftSettings: swiftSettings
        ),

        .target(
            name: "MaestroCore",
            dependencies: ["MaestroValue", "MaestroYAML", "MaestroRedis", "MaestroHTTP",
                           .product(name: "Logging", package: "swift-log"), .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "CoreMetrics", package: "swift-metrics"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "Tracing", package: "swift-distributed-tracing")],
            swiftSettings: swiftSettings
        ),

        .target(
            name: "MaestroPluginHost",
            dependencies: ["MaestroCore", "MaestroLua", "MaestroRedis", "MaestroValue", "MaestroYAML", "MaestroHTTP",
                           .product(name: "Logging", package: "swift-log"), .product(name: "CoreMetrics", package: "swift-metrics"),
                           .product(name: "Tracing", package: "swift-distributed-tracing")],
            // lua/ is embedded by scripts/generate-lua (Generated/EmbeddedLua.swift).
            exclude: ["lua"],
            swiftSettings: swiftSettings
        ),

        // The gRPC API: protos in proto/, generated code committed under Generated/ (scripts/generate-grpc).
        .target(
            name: "MaestroAPI",
            dependencies: [
                "MaestroCore", "MaestroRedis", "MaestroValue", "MaestroYAML",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            exclude: ["Generated/PROTO_CHECKSUMS"],
            swiftSettings: swiftSettings
        ),

        // maestro's roles assembled from the resolved settings: what `maestro run` and the demo start.
        .target(
            name: "MaestroRoles",
            dependencies: [
                "MaestroCore", "MaestroPluginHost", "MaestroAPI", "MaestroRedis", "MaestroValue",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),

        // The settings' flags and the exit-code conventions shared by the two programs.
        .target(
            name: "MaestroCommandLine",
            dependencies: ["MaestroCore", "MaestroRoles", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "maestro",
            dependencies: [
                "MaestroRoles", "MaestroCommandLine",
                "MaestroCore", "MaestroPluginHost", "MaestroAPI", "MaestroLua", "MaestroRedis", "MaestroYAML", "MaestroValue",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                "MaestroTraceExporter",
            ],
            swiftSettings: swiftSettings
        ),

        // The trace exporter (swift-otel), linked by the two programs only (scripts/check-boundaries).
        .target(
            name: "MaestroTraceExporter",
            dependencies: [
                "MaestroCore", "MaestroRoles",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ],
            swiftSettings: swiftSettings
        ),

        // The benchmarks (scripts/bench): a program of their own, never part of the shipped `maestro`.
        .executableTarget(
            name: "maestro-bench",
            dependencies: [
                "MaestroRoles", "MaestroCommandLine", "MaestroCore", "MaestroPluginHost", "MaestroRedis", "MaestroValue", "MaestroYAML",
                "MaestroTraceExporter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // The fuzz targets: run by libFuzzer from fuzz/, their corpora replayed by MaestroCoreTests.
        .target(name: "MaestroFuzzTargets", dependencies: ["MaestroCore", "MaestroHTTP", "MaestroLua", "MaestroRedis", "MaestroValue", "MaestroYAML"],
                swiftSettings: swiftSettings),

        // Helpers shared by the test targets: a local redis-server, temporary folders, processes.
        .target(name: "MaestroTestSupport", dependencies: ["MaestroCore", "MaestroHTTP", "MaestroValue"], swiftSettings: swiftSettings),

        .testTarget(name: "MaestroValueTests", dependencies: ["MaestroValue", "MaestroTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "MaestroYAMLTests", dependencies: ["MaestroYAML", "MaestroValue", "MaestroTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "MaestroRedisTests", dependencies: ["MaestroRedis", "MaestroCore", "MaestroTestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "MaestroHTTPTests", dependencies: ["MaestroHTTP", "MaestroCore", "MaestroTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "MaestroLuaTests",
            dependencies: ["MaestroLua", "MaestroValue", "MaestroTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MaestroPluginHostTests",
            dependencies: ["MaestroPluginHost", "MaestroCore", "MaestroLua", "MaestroRedis", "MaestroValue", "MaestroYAML",
                           "MaestroTestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MaestroAPITests",
            dependencies: ["MaestroAPI", "MaestroPluginHost", "MaestroCore", "MaestroRedis", "MaestroValue", "MaestroYAML", "MaestroTestSupport",
                           .product(name: "GRPCCore", package: "grpc-swift-2"),
                           .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "MaestroCLITests", dependencies: ["maestro", "MaestroCore", "MaestroRedis", "MaestroValue", "MaestroYAML", "MaestroTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "MaestroCoreTests",
            dependencies: ["MaestroCore", "MaestroRedis", "MaestroValue", "MaestroTestSupport", "MaestroFuzzTargets",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                           .product(name: "InMemoryTracing", package: "swift-distributed-tracing")],
            swiftSettings: swiftSettings
        ),
    ]
)
