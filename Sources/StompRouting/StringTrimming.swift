extension StringProtocol {
    /// The text without any of `characters` at either end. (The modules avoid Foundation,
    /// whose `trimmingCharacters(in:)` this stands in for.)
    public func trimming(_ characters: String) -> SubSequence {
        var slice = self[...]
        while let first = slice.first, characters.contains(first) { slice.removeFirst() }
        while let last = slice.last, characters.contains(last) { slice.removeLast() }
        return slice
    }
}
