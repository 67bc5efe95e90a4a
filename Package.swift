// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "stomp-cluster",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cluster-node", targets: ["ClusterNode"]),
        .executable(name: "clusterctl", targets: ["clusterctl"]),
        .library(name: "StompRouting", targets: ["StompRouting"]),
        .library(name: "BrokerShell", targets: ["BrokerShell"]),
        .library(name: "WebSocketIO", targets: ["WebSocketIO"]),
        .library(name: "Gossip", targets: ["Gossip"]),
        .library(name: "Replication", targets: ["Replication"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // The STOMP protocol core: codec, per-connection session state machine and the local router.
        // Sans-IO: it imports NIOCore for ByteBuffer only, never sockets.
        .target(
            name: "StompRouting",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // The system's liblz4 (Debian's liblz4-dev), for the inter-node link's compression.
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        // The system's zlib, for the CRC-32 of each record in the durable log (crc32 is
        // hardware-assisted there; no checksum of our own).
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // Durable queues: the node's write-ahead log (Log/) and Raft per queue (Raft/), both
        // sans-IO cores but for the log's file shell. See REPLICATION.md.
        .target(
            name: "Replication",
            dependencies: [
                "CZlib",
                .product(name: "NIOCore", package: "swift-nio"),
                // For the log's writer thread only (Log/WriteAheadLog.swift).
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            exclude: ["REPLICATION.md"]
        ),
        // Membership, interest gossip and the compressed inter-node link. The protocol logic is
        // sans-IO (Membership/, Interest/, Link/); Shell/ does the networking.
        .target(
            name: "Gossip",
            dependencies: [
                "StompRouting",
                "BrokerShell",
                "CLZ4",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            exclude: ["Link/WIRE-FORMAT.md"]
        ),
        // The router's shell: confines it to one event loop, carries its outputs to the clients'
        // connections and to the cluster, paces shutdown, and bounds the work queued between loops.
        .target(
            name: "BrokerShell",
            dependencies: [
                "StompRouting",
                "Replication",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // Bytes <-> frames: TCP, WebSocket upgrade, TLS, and the channel handler that drives a session.
        .target(
            name: "WebSocketIO",
            dependencies: [
                "StompRouting",
                "BrokerShell",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The admin API's JSON documents, shared by the node and clusterctl.
        .target(name: "AdminSchema"),
        // The `cluster-node` executable: configuration, wiring and lifecycle.
        .executableTarget(
            name: "ClusterNode",
            dependencies: [
                "AdminSchema",
                "StompRouting",
                "BrokerShell",
                "WebSocketIO",
                "Gossip",
                "Replication",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            // The admin port's web console, compiled into the binary: no files to ship beside it.
            resources: [.embedInCode("Admin/Console/console.html")]
        ),
        // The operator CLI: talks to nodes' admin APIs, and is a STOMP client for pub/sub.
        .executableTarget(
            name: "clusterctl",
            dependencies: [
                "AdminSchema",
                "StompRouting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "StompRoutingTests",
            dependencies: [
                "StompRouting",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "GossipTests",
            dependencies: [
                "Gossip",
                "StompRouting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "ClusterNodeTests",
            dependencies: [
                "ClusterNode",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "ClusterctlTests",
            dependencies: [
                "clusterctl",
                "AdminSchema",
                "StompRouting",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "ReplicationTests",
            dependencies: [
                "Replication",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "BrokerShellTests",
            dependencies: [
                "BrokerShell",
                "StompRouting",
                "Replication",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "WebSocketIOTests",
            dependencies: [
                "WebSocketIO",
                "BrokerShell",
                "StompRouting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
    ]
)
