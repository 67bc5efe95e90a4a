extension AdminModels {
    /// `GET /v1/stats`: the node's counters sampled on a timer, oldest first, so a console or
    /// `clusterctl top` draws the last minutes without keeping history of its own.
    public struct Stats: Codable, Sendable {
        public var node: String
        /// Seconds between samples.
        public var intervalSeconds: Double
        /// How many samples the node keeps at most (its ring buffer's capacity).
        public var capacity: Int
        public var samples: [StatsSample]

        public init(node: String, intervalSeconds: Double, capacity: Int, samples: [StatsSample]) {
            self.node = node
            self.intervalSeconds = intervalSeconds
            self.capacity = capacity
            self.samples = samples
        }

        /// Per-second rates over the last `window` samples (fewer when fewer are held).
        ///
        /// - Parameter window: how many sample intervals to average over; at least 1.
        /// - Returns: `nil` until two samples are held.
        public func rates(overLast window: Int = 5) -> StatsRates? {
            guard samples.count >= 2 else { return nil }
            let newest = samples[samples.count - 1]
            let oldest = samples[max(0, samples.count - 1 - max(1, window))]
            return StatsRates(from: oldest, to: newest)
        }
    }

    /// One reading of a node's counters. Totals only ever grow (until the node restarts);
    /// `connections` is a gauge, as it was at `uptimeSeconds`.
    public struct StatsSample: Codable, Sendable, Equatable {
        public var uptimeSeconds: Double
        public var messagesPublished: Int
        public var messagesDelivered: Int
        public var connections: Int
        /// Sent and received over every cluster link, before compression.
        public var linkRawBytes: Int
        /// Sent and received over every cluster link, as they crossed the wire.
        public var linkWireBytes: Int

        public init(
            uptimeSeconds: Double,
            messagesPublished: Int,
            messagesDelivered: Int,
            connections: Int,
            linkRawBytes: Int,
            linkWireBytes: Int
        ) {
            self.uptimeSeconds = uptimeSeconds
            self.messagesPublished = messagesPublished
            self.messagesDelivered = messagesDelivered
            self.connections = connections
            self.linkRawBytes = linkRawBytes
            self.linkWireBytes = linkWireBytes
        }
    }

    /// Per-second rates between two samples.
    public struct StatsRates: Codable, Sendable, Equatable {
        public var published: Double
        public var delivered: Double
        public var linkRawBytes: Double
        public var linkWireBytes: Double

        /// No traffic at all.
        public static let zero = StatsRates(published: 0, delivered: 0, linkRawBytes: 0, linkWireBytes: 0)

        public init(published: Double, delivered: Double, linkRawBytes: Double, linkWireBytes: Double) {
            self.published = published
            self.delivered = delivered
            self.linkRawBytes = linkRawBytes
            self.linkWireBytes = linkWireBytes
        }

        /// Adds another node's rates, for a cluster's totals.
        public mutating func add(_ other: StatsRates) {
            published += other.published
            delivered += other.delivered
            linkRawBytes += other.linkRawBytes
            linkWireBytes += other.linkWireBytes
        }

        /// - Returns: zero rates when the samples are not in time order (a restarted node).
        public init(from older: StatsSample, to newer: StatsSample) {
            let seconds = newer.uptimeSeconds - older.uptimeSeconds
            func rate(_ counter: KeyPath<StatsSample, Int>) -> Double {
                guard seconds > 0 else { return 0 }
                return max(0, Double(newer[keyPath: counter] - older[keyPath: counter]) / seconds)
            }
            published = rate(\.messagesPublished)
            delivered = rate(\.messagesDelivered)
            linkRawBytes = rate(\.linkRawBytes)
            linkWireBytes = rate(\.linkWireBytes)
        }
    }

    /// One page of a long list: `items` from `offset`, at most `limit` of them, out of `total`.
    public struct Page<Item: Codable & Sendable>: Codable, Sendable {
        public var offset: Int
        public var limit: Int
        public var total: Int
        public var items: [Item]

        public init(offset: Int, limit: Int, total: Int, items: [Item]) {
            self.offset = offset
            self.limit = limit
            self.total = total
            self.items = items
        }
    }
}
