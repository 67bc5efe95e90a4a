/// The newest `capacity` values, oldest first: a fixed amount of memory however long the
/// node runs, which is why the admin API keeps its history in one.
struct SampleRing<Element> {
    let capacity: Int
    /// Grows to `capacity`, then its slots are reused.
    private var storage: [Element] = []
    /// The slot the next value goes to once `storage` is full: the oldest value's slot.
    private var next = 0

    /// - Parameter capacity: how many values to keep; at least 1.
    init(capacity: Int) {
        precondition(capacity >= 1, "a SampleRing holds at least one value, not \(capacity)")
        self.capacity = capacity
        storage.reserveCapacity(capacity)
    }

    /// Keeps `value`, dropping the oldest one when full.
    mutating func append(_ value: Element) {
        if storage.count < capacity {
            storage.append(value)
        } else {
            storage[next] = value
            next = (next + 1) % capacity
        }
    }

    var count: Int { storage.count }

    /// Every value held, oldest first.
    var elements: [Element] {
        Array(storage[next...] + storage[..<next])
    }
}
