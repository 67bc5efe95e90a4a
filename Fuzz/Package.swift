// swift-tools-version: 6.1
// libFuzzer targets for the code that reads untrusted bytes, kept out of the main package so
// that `swift build` and `swift test` never pay for them. Build and run: `make fuzz` (see
// scripts/fuzz.sh and Fuzz/README.md).
import PackageDescription

let package = Package(
    name: "stomp-cluster-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "stomp-cluster", path: "../"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // Client bytes -> StompFrameDecoder -> SessionStateMachine -> Router, no I/O.
        .executableTarget(
            name: "FuzzStompSession",
            dependencies: [
                "FuzzDriver",
                .product(name: "StompRouting", package: "stomp-cluster"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // HTTP upgrade + WebSocket frames + STOMP through the real pipeline on an EmbeddedChannel.
        .executableTarget(
            name: "FuzzWebSocket",
            dependencies: [
                "FuzzDriver",
                .product(name: "StompRouting", package: "stomp-cluster"),
                .product(name: "BrokerShell", package: "stomp-cluster"),
                .product(name: "WebSocketIO", package: "stomp-cluster"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Link bytes -> LinkFrame.Decoder (and LZ4) -> LinkMessage.decodeAll, with a round trip.
        .executableTarget(
            name: "FuzzLinkFrame",
            dependencies: [
                "FuzzDriver",
                "FuzzLinkSupport",
                .product(name: "Gossip", package: "stomp-cluster"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Link bytes -> messages -> LinkHandshake, checked against an honest peer's proof.
        .executableTarget(
            name: "FuzzLinkHandshake",
            dependencies: [
                "FuzzDriver",
                "FuzzLinkSupport",
                .product(name: "Gossip", package: "stomp-cluster"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Raft messages from peers and the durable log's segments, records and queue commands.
        .executableTarget(
            name: "FuzzReplication",
            dependencies: [
                "FuzzDriver",
                .product(name: "Replication", package: "stomp-cluster"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // libFuzzer's driver behind a Swift `@main` (SwiftPM renames an executable's entry point).
        .target(name: "FuzzDriver", dependencies: ["CLibFuzzer"]),
        .target(name: "CLibFuzzer"),
        // What the link targets and the seed generator share.
        .target(
            name: "FuzzLinkSupport",
            dependencies: [
                .product(name: "Gossip", package: "stomp-cluster"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Writes Fuzz/Corpus from the real encoders: `.build-fuzz/release/FuzzSeeds Fuzz/Corpus`.
        .executableTarget(
            name: "FuzzSeeds",
            dependencies: [
                "FuzzLinkSupport",
                .product(name: "Replication", package: "stomp-cluster"),
                .product(name: "Gossip", package: "stomp-cluster"),
                .product(name: "StompRouting", package: "stomp-cluster"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
    ]
)
