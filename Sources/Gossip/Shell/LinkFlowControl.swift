/// The node's back-pressure, as links take part in it.
///
/// A link stops reading while its node is behind, so that a peer forwarding faster than
/// this node delivers fills the link instead of this node's memory; and a link whose peer
/// stopped reading reports itself congested, so that the node slows its own publishers.
/// The broker's flow control implements it.
public protocol LinkFlowControl: AnyObject, Sendable {
    /// Whether links should stop reading: the node has more work queued than it allows.
    var isBehind: Bool { get }
    /// Calls `resume`, on any thread, once the node has caught up; at once if it has.
    func linkPaused(resume: @escaping @Sendable () -> Void)
    /// A link's unsent bytes passed its high-water mark (`true`) or fell back under its low
    /// one (`false`). Every `true` is followed by one `false`, when the link drains or closes.
    func linkCongestionChanged(congested: Bool)
}
