import StompRouting
import Testing

@Suite struct StringTrimmingTests {
    @Test func trimsEachScalarOfTheSetAtBothEnds() {
        let whitespace = " \t\r\n"
        #expect("secret\n".trimming(whitespace) == "secret")
        #expect("\nsecret\r\n".trimming(whitespace) == "secret")
        #expect(" \t secret \r".trimming(whitespace) == "secret")
        #expect("\n".trimming(whitespace) == "")
        #expect("in side".trimming(whitespace) == "in side")
        #expect("".trimming(whitespace) == "")
    }
}
