// swift-tools-version:6.0
// libFuzzer builds of maestro's fuzz targets (scripts/fuzz, `make fuzz`): a package of its own, so that
// the sanitizer flags never reach the regular build, and each fuzzer links only what it tests.
// scripts/fuzz links ./maestro to the repository root before building.
import PackageDescription

let fuzzers = ["SinkEvent", "SinkConfig", "YAML", "LuaValue", "Kubeconfig", "RedisURL", "HTTPURL", "LuaGraph"]

let package = Package(
    name: "maestro-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "maestro")],
    targets: fuzzers.map { name in
        .executableTarget(name: "Fuzz\(name)", dependencies: [.product(name: "MaestroFuzzTargets", package: "maestro")],
                          path: "Sources/Fuzz\(name)")
    }
)
