// swift-tools-version: 6.1
// Micro-benchmarks of the hot paths, kept out of the main package so that `swift build` and
// `swift test` never pay for them. Run: `cd Benchmarks && swift package benchmark`.
import PackageDescription

let package = Package(
    name: "stomp-cluster-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "stomp-cluster", path: "../"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "CoreBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "StompRouting", package: "stomp-cluster"),
                .product(name: "Gossip", package: "stomp-cluster"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/CoreBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark")
            ]
        )
    ]
)
