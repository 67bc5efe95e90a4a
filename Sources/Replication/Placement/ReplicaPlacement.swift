/// Which nodes hold a durable queue's replicas: rendezvous (highest random weight) hashing of
/// the queue's name with each node's id. Every node computes the same set from the same
/// members, without asking anyone; a node joining or leaving moves only the queues it ranks
/// high for, not the others.
public enum ReplicaPlacement {
    /// The `factor` nodes of `nodes` that rank highest for `group` (all of them when fewer),
    /// best first.
    public static func replicas(of group: String, among nodes: some Sequence<ReplicaID>, factor: Int) -> [ReplicaID] {
        let groupHash = fnv1a(group.utf8, seed: 0xCBF2_9CE4_8422_2325)
        return
            nodes
            .map { (weight: mix(fnv1a($0.name.utf8, seed: groupHash)), node: $0) }
            .sorted { ($0.weight, $0.node) > ($1.weight, $1.node) }
            .prefix(max(factor, 0))
            .map(\.node)
    }

    /// FNV-1a over `bytes`, from `seed`: stable across processes and builds, unlike `Hasher`.
    private static func fnv1a(_ bytes: some Sequence<UInt8>, seed: UInt64) -> UInt64 {
        var hash = seed
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// SplitMix64's finaliser: FNV's low bits mix poorly, and the ranking compares whole words.
    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
