import NIOCore

/// The commands of STOMP 1.0, 1.1 and 1.2, client and server frames alike.
public enum StompCommand: String, Sendable, CaseIterable {
    // Client frames.
    case connect = "CONNECT"
    case stomp = "STOMP"
    case send = "SEND"
    case subscribe = "SUBSCRIBE"
    case unsubscribe = "UNSUBSCRIBE"
    case ack = "ACK"
    case nack = "NACK"
    case begin = "BEGIN"
    case commit = "COMMIT"
    case abort = "ABORT"
    case disconnect = "DISCONNECT"
    // Server frames.
    case connected = "CONNECTED"
    case message = "MESSAGE"
    case receipt = "RECEIPT"
    case error = "ERROR"

    /// Recognises a command line's bytes without making a string of them.
    init?(_ bytes: some Collection<UInt8>) {
        // Commands are short and few; the most frequent come first.
        for command in Self.byFrequency where command.rawValue.utf8.elementsEqual(bytes) {
            self = command
            return
        }
        return nil
    }

    private static let byFrequency: [StompCommand] = [
        .send, .ack, .nack, .subscribe, .unsubscribe, .begin, .commit, .abort, .connect, .stomp, .disconnect, .message,
        .receipt, .error, .connected,
    ]

    /// CONNECT and CONNECTED are never escaped, in any version, so that a client can
    /// negotiate before it knows which escaping rules apply.
    var escapesHeaders: Bool {
        switch self {
        case .connect, .stomp, .connected: return false
        default: return true
        }
    }
}

/// A negotiated protocol version. The order of the cases is the order of preference.
public enum StompVersion: Int, Sendable, Comparable, CaseIterable {
    case v1_0 = 0
    case v1_1 = 1
    case v1_2 = 2

    /// The value used in `accept-version` and `version` headers.
    public var headerValue: String {
        switch self {
        case .v1_0: return "1.0"
        case .v1_1: return "1.1"
        case .v1_2: return "1.2"
        }
    }

    /// Parses a version as it appears in `accept-version`.
    public init?(headerValue: Substring) {
        switch headerValue {
        case "1.0": self = .v1_0
        case "1.1": self = .v1_1
        case "1.2": self = .v1_2
        default: return nil
        }
    }

    public static func < (lhs: StompVersion, rhs: StompVersion) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The headers of a frame, in wire order.
///
/// STOMP allows a header to repeat; only the first occurrence counts, so lookups return
/// the first match. A frame has few headers, so a linear scan beats hashing.
public struct StompHeaders: Sendable, Equatable, ExpressibleByDictionaryLiteral, Sequence {
    public typealias Element = (name: String, value: String)

    @usableFromInline
    var storage: [Element]

    public init() { self.storage = [] }

    /// Headers with room for `minimumCapacity` of them before the storage grows.
    public init(minimumCapacity: Int) {
        self.storage = []
        storage.reserveCapacity(minimumCapacity)
    }

    public init(_ headers: [(String, String)]) {
        self.storage = headers.map { (name: $0.0, value: $0.1) }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// The value of the first header with this name, if any.
    public subscript(name: String) -> String? {
        for header in storage where header.name == name { return header.value }
        return nil
    }

    /// Appends a header, keeping any earlier one of the same name (which stays the effective one).
    public mutating func add(_ name: String, _ value: String) {
        storage.append((name: name, value: value))
    }

    /// Replaces every header of this name with a single one.
    public mutating func replaceOrAdd(_ name: String, _ value: String) {
        storage.removeAll { $0.name == name }
        storage.append((name: name, value: value))
    }

    public var count: Int { storage.count }

    public func makeIterator() -> IndexingIterator<[Element]> { storage.makeIterator() }

    public static func == (lhs: StompHeaders, rhs: StompHeaders) -> Bool {
        lhs.storage.elementsEqual(rhs.storage) { $0.name == $1.name && $0.value == $1.value }
    }
}

/// One STOMP frame: a command, its headers and a body of raw bytes.
public struct StompFrame: Sendable, Equatable {
    public var command: StompCommand
    public var headers: StompHeaders
    public var body: ByteBuffer

    public init(_ command: StompCommand, headers: StompHeaders = [:], body: ByteBuffer = ByteBuffer()) {
        self.command = command
        self.headers = headers
        self.body = body
    }
}

/// Names of the headers this broker reads or writes, spelled once.
public enum StompHeader {
    public static let acceptVersion = "accept-version"
    public static let ack = "ack"
    public static let contentLength = "content-length"
    public static let contentType = "content-type"
    public static let destination = "destination"
    public static let heartBeat = "heart-beat"
    public static let host = "host"
    public static let id = "id"
    public static let login = "login"
    public static let message = "message"
    public static let messageID = "message-id"
    public static let passcode = "passcode"
    /// `persistent:true` on a SEND to a queue: stored and replicated before its RECEIPT.
    public static let persistent = "persistent"
    public static let prefetchCount = "prefetch-count"
    public static let receipt = "receipt"
    public static let receiptID = "receipt-id"
    public static let redelivered = "redelivered"
    public static let server = "server"
    public static let session = "session"
    public static let subscription = "subscription"
    public static let transaction = "transaction"
    public static let replyTo = "reply-to"
    public static let version = "version"
}
