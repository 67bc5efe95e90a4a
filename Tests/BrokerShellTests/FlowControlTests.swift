import Synchronization
import Testing

@testable import BrokerShell

/// Counts how often a resume callback ran.
private final class Resumes: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
    func callback() -> @Sendable () -> Void { { self.count.add(1, ordering: .relaxed) } }
}

@Suite struct FlowControlTests {
    @Test func behindOnlyAboveTheHighWaterMark() {
        let flow = FlowControl(highWater: 10, lowWater: 4)
        flow.queued(10)
        #expect(!flow.isBehind)
        #expect(!flow.shouldPausePublishers)
        flow.queued(1)
        #expect(flow.isBehind)
        #expect(flow.shouldPausePublishers)
        flow.completed(11)
        #expect(flow.queuedWork == 0)
        #expect(!flow.isBehind)
    }

    @Test func pausedInputsResumeOnlyUnderTheLowWaterMark() {
        let flow = FlowControl(highWater: 10, lowWater: 4)
        let link = Resumes()
        let client = Resumes()
        flow.queued(20)
        flow.linkPaused(resume: link.callback())
        flow.clientPaused(resume: client.callback())
        flow.completed(15)  // 5 left: under the high mark, not yet under the low one.
        #expect(!flow.isBehind)
        #expect(link.value == 0)
        #expect(client.value == 0)
        flow.completed(1)  // 4 left.
        #expect(link.value == 1)
        #expect(client.value == 1)
        flow.completed(4)
        #expect(link.value == 1, "each pause is resumed once")
        #expect(client.value == 1)
    }

    @Test func pausingAfterTheBacklogDrainedResumesAtOnce() {
        let flow = FlowControl(highWater: 10, lowWater: 4)
        let link = Resumes()
        // The input saw the node behind; by the time it registers, the backlog is gone.
        flow.linkPaused(resume: link.callback())
        #expect(link.value == 1)
    }

    @Test func congestedLinkPausesPublishersButNotLinks() {
        let flow = FlowControl(highWater: 10, lowWater: 4)
        flow.linkCongestionChanged(congested: true)
        #expect(!flow.isBehind, "links pause only for this node's own backlog")
        #expect(flow.shouldPausePublishers)

        let client = Resumes()
        let link = Resumes()
        flow.clientPaused(resume: client.callback())
        flow.linkPaused(resume: link.callback())
        #expect(client.value == 0)
        #expect(link.value == 1, "a link never waits for another link: two nodes would wait for each other")

        flow.linkCongestionChanged(congested: true)
        flow.linkCongestionChanged(congested: false)
        #expect(client.value == 0, "one of two links is still congested")
        flow.linkCongestionChanged(congested: false)
        #expect(client.value == 1)
        #expect(!flow.shouldPausePublishers)
    }

    @Test func publishersWaitForBothTheBacklogAndTheLinks() {
        let flow = FlowControl(highWater: 10, lowWater: 4)
        let client = Resumes()
        flow.queued(11)
        flow.linkCongestionChanged(congested: true)
        flow.clientPaused(resume: client.callback())
        flow.completed(11)
        #expect(client.value == 0)
        flow.linkCongestionChanged(congested: false)
        #expect(client.value == 1)
    }
}
