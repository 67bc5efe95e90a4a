import NIOCore
import Synchronization

/// Failed logins per source address: past a few a minute, an address is refused at once,
/// without the cost of a hash, until its minute is over. So one address can't guess
/// passwords quickly or keep the hashing threads busy.
final class LoginThrottle: Sendable {
    private struct Window {
        var start: NIODeadline
        var failures: Int
    }

    private let limit: Int
    private let window: TimeAmount
    /// At most this many addresses are remembered; beyond, the stalest goes.
    private let capacity: Int
    private let windows = Mutex<[String: Window]>([:])

    init(failuresPerWindow limit: Int = 10, window: TimeAmount = .seconds(60), capacity: Int = 10_000) {
        self.limit = limit
        self.window = window
        self.capacity = capacity
    }

    /// Whether `address` has used up its failures for now.
    func isThrottled(_ address: String, now: NIODeadline = .now()) -> Bool {
        windows.withLock { windows in
            guard let entry = windows[address] else { return false }
            if now - entry.start >= window {
                windows[address] = nil
                return false
            }
            return entry.failures >= limit
        }
    }

    func recordFailure(_ address: String, now: NIODeadline = .now()) {
        windows.withLock { windows in
            if var entry = windows[address], now - entry.start < window {
                entry.failures += 1
                windows[address] = entry
                return
            }
            if windows.count >= capacity, windows[address] == nil {
                windows = windows.filter { now - $0.value.start < window }
                if windows.count >= capacity, let stalest = windows.min(by: { $0.value.start < $1.value.start })?.key {
                    windows[stalest] = nil
                }
            }
            windows[address] = Window(start: now, failures: 1)
        }
    }

    var trackedAddresses: Int { windows.withLock { $0.count } }
}
