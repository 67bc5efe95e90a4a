/// A node's name in the cluster, as configured (`--node-id`). Stable across restarts; a
/// restart is told apart by the boot epoch that travels with it.
public struct NodeID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name }
    public var description: String { name }
    public static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.name < rhs.name }
}
