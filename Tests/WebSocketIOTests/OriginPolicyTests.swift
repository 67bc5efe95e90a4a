import Testing
import WebSocketIO

@Suite struct OriginPolicyTests {
    @Test func anyAllowsEveryOriginAndNoOrigin() {
        #expect(OriginPolicy.any.allows("https://anything.example"))
        #expect(OriginPolicy.any.allows(nil))
        #expect(OriginPolicy(["https://a.example", "*"]) == .any)
    }

    @Test func aListAllowsItsOriginsOnlyIgnoringCaseAndATrailingSlash() {
        let policy = OriginPolicy(["https://app.example", "http://localhost:8080/"])
        #expect(policy.allows("https://app.example"))
        #expect(policy.allows("HTTPS://App.Example/"))
        #expect(policy.allows("http://localhost:8080"))
        #expect(!policy.allows("http://app.example"))
        #expect(!policy.allows("https://app.example:8443"))
        #expect(!policy.allows("https://app.example.evil.example"))
        #expect(!policy.allows("null"))
        // Clients that aren't browsers send no Origin: not this policy's concern.
        #expect(policy.allows(nil))
    }

    @Test func anEmptyListAllowsNoBrowserAtAll() {
        let none = OriginPolicy([])
        #expect(!none.allows("http://localhost"))
        #expect(none.allows(nil))
    }
}
