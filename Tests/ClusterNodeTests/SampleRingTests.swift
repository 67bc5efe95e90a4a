import Testing

@testable import ClusterNode

/// The history behind `/v1/stats` keeps the newest samples in fixed memory, oldest first.
@Suite struct SampleRingTests {
    @Test func holdsWhatWasAppendedUntilFull() {
        var ring = SampleRing<Int>(capacity: 3)
        #expect(ring.elements.isEmpty)
        ring.append(1)
        ring.append(2)
        #expect(ring.elements == [1, 2])
        #expect(ring.count == 2)
    }

    @Test(arguments: [1, 2, 3, 7, 300])
    func keepsTheNewestInOrderOnceFull(capacity: Int) {
        var ring = SampleRing<Int>(capacity: capacity)
        for value in 0..<(capacity * 3 + 1) { ring.append(value) }
        let newest = capacity * 3
        #expect(ring.count == capacity)
        #expect(ring.elements == Array((newest - capacity + 1)...newest))
    }
}

/// Listings answer one bounded page: `offset`/`limit` from the query, a hard maximum.
@Suite struct PageRequestTests {
    @Test func defaultsToTheFirstPageOfTheMaximum() throws {
        #expect(try PageRequest.parse([:], maximum: 50).get() == PageRequest(offset: 0, limit: 50))
    }

    @Test func readsOffsetAndLimit() {
        let page = try? PageRequest.parse(["offset": "20", "limit": "10"], maximum: 50).get()
        #expect(page == PageRequest(offset: 20, limit: 10))
        #expect(page?.slice(of: Array(0..<100)) == ArraySlice(20..<30))
    }

    @Test func refusesALimitAboveTheMaximumNamingTheSetting() {
        let result = PageRequest.parse(["limit": "51"], maximum: 50)
        #expect(throws: PageRequest.Refusal.tooLarge(limit: 51, maximum: 50)) { try result.get() }
        if case .failure(let refusal) = result { #expect("\(refusal)".contains("admin.max-page-size")) }
    }

    @Test(arguments: ["-1", "ten", "", "1.5"])
    func refusesWhatIsNotACount(text: String) {
        #expect(throws: PageRequest.Refusal.notACount(parameter: "offset", text: text)) {
            try PageRequest.parse(["offset": text], maximum: 50).get()
        }
    }

    @Test func pagesAtAndPastTheEndAreShortOrEmpty() {
        let items = Array(0..<25)
        #expect(PageRequest(offset: 20, limit: 10).slice(of: items) == ArraySlice(20..<25))
        #expect(PageRequest(offset: 25, limit: 10).slice(of: items).isEmpty)
        #expect(PageRequest(offset: Int.max, limit: 10).slice(of: items).isEmpty)
        #expect(PageRequest(offset: 0, limit: 0).slice(of: items).isEmpty)
    }
}
