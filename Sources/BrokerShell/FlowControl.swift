import CoreMetrics
import Synchronization

/// Back-pressure for the work that flows into the router and out to other loops.
///
/// Every hop between event loops is a task queue, and task queues have no bound: a node
/// that reads faster than it delivers would let them grow until memory runs out. So the
/// broker counts the operations and deliveries it has queued for another loop and not yet
/// carried out (the backlog). Above ``highWater``, the inputs that feed it stop reading after
/// their current read and TCP slows their senders down; they resume once the backlog is back
/// under ``lowWater``. The gap between the two keeps inputs from flapping.
///
/// Two kinds of input pause, for different reasons:
/// - links from other nodes, on this node's own backlog only ("this node is behind"), so
///   that a peer forwarding faster than this node delivers fills its link instead;
/// - clients that publish, on the backlog or on a congested link to a peer (one whose unsent
///   bytes passed their high-water mark because that peer stopped reading). That is how a
///   node that is behind slows publishers anywhere in the cluster, rather than making their
///   nodes buffer without bound or drop.
///
/// Links never pause for congested links: two nodes each waiting for the other to read
/// would wait for ever. A backlog always drains, since delivering never waits for a reader
/// (a client that stops reading is cut off as a slow consumer), so no cycle can form.
public final class FlowControl: Sendable {
    /// Queued operations and deliveries above which inputs pause.
    public let highWater: Int
    /// Queued operations and deliveries below which paused inputs resume.
    public let lowWater: Int

    private let backlog = Atomic<Int>(0)
    private let congestedLinks = Atomic<Int>(0)
    /// Inputs waiting to resume: links wait for the backlog only, clients for the links too.
    private let waiting = Mutex<(links: [@Sendable () -> Void], clients: [@Sendable () -> Void])>(([], []))
    private let clientPauses = Counter(label: "flow_control_pauses_total", dimensions: [("input", "client")])
    private let linkPauses = Counter(label: "flow_control_pauses_total", dimensions: [("input", "link")])

    public init(highWater: Int = 20_000, lowWater: Int = 5_000) {
        precondition(lowWater < highWater, "the low-water mark must be below the high-water mark")
        self.highWater = highWater
        self.lowWater = lowWater
    }

    /// Operations and deliveries queued for another loop and not yet carried out.
    public var queuedWork: Int { backlog.load(ordering: .relaxed) }

    /// Whether links from other nodes should stop reading: this node is behind.
    public var isBehind: Bool { queuedWork > highWater }

    /// Whether publishing clients should stop reading: this node is behind, or a peer is.
    public var shouldPausePublishers: Bool { isBehind || congestedLinks.load(ordering: .relaxed) > 0 }

    // MARK: - Accounting (broker)

    /// `count` items were queued for another loop.
    package func queued(_ count: Int) {
        backlog.add(count, ordering: .relaxed)
    }

    /// `count` items queued earlier were carried out.
    package func completed(_ count: Int) {
        let remaining = backlog.subtract(count, ordering: .relaxed).newValue
        if remaining <= lowWater, remaining + count > lowWater {
            resumeIfPossible()
        }
    }

    // MARK: - Links

    /// A link's unsent bytes passed its high-water mark (`true`) or fell back under its low
    /// one (`false`). Every `true` is followed by one `false`, when the link drains or closes.
    public func linkCongestionChanged(congested: Bool) {
        if congested {
            congestedLinks.add(1, ordering: .relaxed)
        } else if congestedLinks.subtract(1, ordering: .relaxed).newValue == 0 {
            resumeIfPossible()
        }
    }

    // MARK: - Pausing

    /// Records that a link paused (``isBehind`` was true), and calls `resume`, on any thread,
    /// once the backlog is under the low-water mark; at once if it already is.
    public func linkPaused(resume: @escaping @Sendable () -> Void) {
        linkPauses.increment()
        waiting.withLock { $0.links.append(resume) }
        // The backlog may have drained between the caller's check and the append above, and
        // whoever drained it found nobody waiting.
        resumeIfPossible()
    }

    /// Records that a publishing client paused (``shouldPausePublishers`` was true), and calls
    /// `resume`, on any thread, once the backlog is under the low-water mark and no link is
    /// congested; at once if that is already so.
    package func clientPaused(resume: @escaping @Sendable () -> Void) {
        clientPauses.increment()
        waiting.withLock { $0.clients.append(resume) }
        resumeIfPossible()
    }

    private func resumeIfPossible() {
        guard queuedWork <= lowWater else { return }
        let linksCongested = congestedLinks.load(ordering: .relaxed) > 0
        let resumes = waiting.withLock { waiting in
            var resumes = waiting.links
            waiting.links.removeAll()
            if !linksCongested {
                resumes += waiting.clients
                waiting.clients.removeAll()
            }
            return resumes
        }
        for resume in resumes { resume() }
    }
}
