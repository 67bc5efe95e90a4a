/// What one node says about one member in membership gossip.
public struct MemberUpdate: Sendable, Equatable {
    public enum Status: UInt8, Sendable, Comparable {
        case alive = 0
        case suspect = 1
        case dead = 2
        case left = 3

        public static func < (lhs: Status, rhs: Status) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    public var node: NodeID
    /// The member's boot epoch: a restarted node is a new incarnation of the same name.
    public var epoch: UInt64
    /// Where its link listens, `host:port`.
    public var address: String
    public var incarnation: UInt64
    public var status: Status

    public init(node: NodeID, epoch: UInt64, address: String, incarnation: UInt64, status: Status) {
        self.node = node
        self.epoch = epoch
        self.address = address
        self.incarnation = incarnation
        self.status = status
    }
}
