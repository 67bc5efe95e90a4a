import Foundation

/// Human tables by default, JSON for scripts.
enum Output {
    /// Prints rows under a header, columns padded to their widest cell.
    static func table(_ header: [String], _ rows: [[String]]) {
        for line in tableLines(header, rows) { print(line) }
    }

    /// The lines ``table(_:_:)`` prints, for a caller that draws a whole screen at once.
    static func tableLines(_ header: [String], _ rows: [[String]]) -> [String] {
        let widths = header.indices.map { column in
            ([header[column]] + rows.map { column < $0.count ? $0[column] : "" }).map(\.count).max() ?? 0
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return [line(header)] + rows.map(line)
    }

    static func json(_ value: some Encodable) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        if let data = try? encoder.encode(value) {
            print(String(decoding: data, as: UTF8.self))
        }
    }
}
