extension StringProtocol {
    /// The text without any of `characters` at either end. (The modules avoid Foundation,
    /// whose `trimmingCharacters(in:)` this stands in for.)
    ///
    /// Compared by Unicode scalar, not by `Character`: in `" \t\r\n"` the pair `\r\n` is a
    /// single Character, which a lone `\n` (the end of a file written by `echo`) never equals.
    public func trimming(_ characters: String) -> SubSequence {
        let scalars = Set(characters.unicodeScalars)
        func trimmed(_ character: Character) -> Bool { character.unicodeScalars.allSatisfy(scalars.contains) }
        var slice = self[...]
        while let first = slice.first, trimmed(first) { slice.removeFirst() }
        while let last = slice.last, trimmed(last) { slice.removeLast() }
        return slice
    }
}
