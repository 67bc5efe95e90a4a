import AdminSchema

/// `offset` and `limit` of a listing endpoint, read from its query, so no answer holds more
/// than `admin.max-page-size` items however many connections the node serves.
struct PageRequest: Equatable, Sendable {
    var offset: Int
    var limit: Int

    /// Why a query's page was refused; the text names the setting that bounds it.
    enum Refusal: Error, Equatable, CustomStringConvertible {
        case notACount(parameter: String, text: String)
        case tooLarge(limit: Int, maximum: Int)

        var description: String {
            switch self {
            case .notACount(let parameter, let text):
                "\(parameter) must be a whole number of 0 or more, not '\(text)'"
            case .tooLarge(let limit, let maximum):
                "limit \(limit) is above admin.max-page-size (\(maximum)); ask for the next page with offset"
            }
        }
    }

    /// - Parameters:
    ///   - query: the request's query parameters; `offset` defaults to 0, `limit` to `maximum`.
    ///   - maximum: the largest page allowed (`admin.max-page-size`).
    /// - Returns: the page, or why it was refused.
    static func parse(_ query: [String: String], maximum: Int) -> Result<PageRequest, Refusal> {
        func count(_ parameter: String, default fallback: Int) -> Result<Int, Refusal> {
            guard let text = query[parameter] else { return .success(fallback) }
            guard let value = Int(text), value >= 0 else {
                return .failure(.notACount(parameter: parameter, text: text))
            }
            return .success(value)
        }
        return count("offset", default: 0).flatMap { offset in
            count("limit", default: maximum).flatMap { limit in
                limit > maximum
                    ? .failure(.tooLarge(limit: limit, maximum: maximum))
                    : .success(PageRequest(offset: offset, limit: limit))
            }
        }
    }

    /// The items of this page; empty past the end.
    func slice<Item>(of items: [Item]) -> ArraySlice<Item> {
        let start = min(offset, items.count)
        return items[start..<min(items.count, start + limit)]
    }

    /// The answer for this page: its items, where it starts, how long it may be, and the total.
    func answer<Item: Codable & Sendable>(total: Int, items: [Item]) -> AdminModels.Page<Item> {
        AdminModels.Page(offset: offset, limit: limit, total: total, items: items)
    }
}
