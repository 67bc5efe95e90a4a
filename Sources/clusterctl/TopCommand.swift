import AdminSchema
import ArgumentParser
import Foundation

/// `clusterctl top`: the console's figures in a terminal, redrawn in place.
struct Top: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live view of the cluster: members, connections, message and link rates (Ctrl-C quits)."
    )

    @OptionGroup var options: NodeOptions

    @Flag(help: "Print one frame and exit (for scripts and tests).")
    var once = false

    @Option(help: "Seconds between frames.")
    var interval: Double = 2

    @Option(help: "Sample intervals the rates average over.")
    var window: Int = 5

    func validate() throws {
        guard interval >= 0.2 else { throw ValidationError("--interval must be at least 0.2 seconds") }
        guard window >= 1 else { throw ValidationError("--window must be at least 1") }
    }

    func run() async throws {
        try await reporting {
            // ANSI redraws only on a terminal; piped output gets plain frames, one after another.
            let redraws = !once && isatty(STDOUT_FILENO) == 1
            let interrupt = Self.quitOnInterrupt()
            defer { interrupt.cancel() }
            while true {
                let frame = try await TopFrame.gather(options: options, window: window)
                let text = frame.render(now: Date())
                // Written whole and unbuffered, so a redraw never shows half a frame.
                FileHandle.standardOutput.write(Data(((redraws ? "\u{1B}[H\u{1B}[2J" : "") + text + "\n").utf8))
                if once { return }
                try await Task.sleep(for: .milliseconds(Int(interval * 1_000)))
            }
        }
    }

    /// Ctrl-C ends `top` with status 0 and the cursor on a fresh line, not mid-frame with 130.
    private static func quitOnInterrupt() -> any DispatchSourceSignal {
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler {
            FileHandle.standardOutput.write(Data("\n".utf8))
            Foundation.exit(0)
        }
        source.resume()
        return source
    }
}

/// One screen of `clusterctl top`: what every member's `/v1/stats` said, or why it didn't.
struct TopFrame {
    struct Row {
        var member: AdminModels.Member
        var stats: Result<AdminModels.Stats, any Error>?
    }

    var rows: [Row]
    var window: Int

    /// One node's `/v1/stats`, as a child task returns it (a named struct, not a tuple: see
    /// `Status.Sample` for the release-build defect that avoids).
    struct Fetched: Sendable {
        var node: String
        var result: Result<AdminModels.Stats, any Error>
    }

    /// Asks the first node for the members, then every member's own admin API for its stats,
    /// all at once, so an unreachable member costs one timeout.
    static func gather(options: NodeOptions, window: Int) async throws -> TopFrame {
        let client = options.client
        var members = try await client.members()
        if members.isEmpty {
            // Clustering is off: the node is the whole view.
            let node: AdminModels.Node = try await client.get("/v1/node")
            members = [
                .init(node: node.id, address: "-", status: "alive", incarnation: 0, epoch: 0, isSelf: true, admin: nil)
            ]
        }
        let fetched = await withTaskGroup(of: Fetched.self) { group in
            for member in members where member.status == "alive" || member.status == "suspect" {
                let memberClient = member.isSelf ? client : options.client(for: member)
                guard let memberClient else { continue }
                group.addTask {
                    do {
                        return Fetched(node: member.node, result: .success(try await memberClient.get("/v1/stats")))
                    } catch {
                        return Fetched(node: member.node, result: .failure(error))
                    }
                }
            }
            var results: [String: Result<AdminModels.Stats, any Error>] = [:]
            for await answer in group { results[answer.node] = answer.result }
            return results
        }
        return TopFrame(rows: members.map { Row(member: $0, stats: fetched[$0.node]) }, window: window)
    }

    /// The frame as text: a summary line, then a row per member.
    func render(now: Date) -> String {
        var connections = 0
        var total = AdminModels.StatsRates.zero
        let cells: [[String]] = rows.map { row in
            let name = row.member.node + (row.member.isSelf ? " *" : "")
            switch row.stats {
            case .success(let stats)?:
                let rates = stats.rates(overLast: window) ?? .zero
                let open = stats.samples.last?.connections ?? 0
                connections += open
                total.add(rates)
                return [
                    name, row.member.status, String(open), Self.count(rates.published), Self.count(rates.delivered),
                    Self.bytes(rates.linkRawBytes), Self.bytes(rates.linkWireBytes), row.member.admin ?? "-",
                ]
            case .failure?:
                return [name, row.member.status, "?", "?", "?", "?", "?", "unreachable"]
            case nil:
                return [name, row.member.status, "-", "-", "-", "-", "-", row.member.admin ?? "-"]
            }
        }
        let secondsToday = Int(now.timeIntervalSince1970) % 86_400
        let time = String(format: "%02d:%02d:%02d UTC", secondsToday / 3_600, secondsToday / 60 % 60, secondsToday % 60)
        var lines = [
            "stomp-cluster  \(rows.count) members  \(connections) connections  "
                + "published \(Self.count(total.published))/s  delivered \(Self.count(total.delivered))/s  "
                + "links \(Self.bytes(total.linkRawBytes)) raw, \(Self.bytes(total.linkWireBytes)) wire  (\(time))",
            "",
        ]
        lines += Output.tableLines(
            ["MEMBER", "STATUS", "CONNS", "PUB/s", "DELIV/s", "LINK RAW/s", "LINK WIRE/s", "ADMIN"],
            cells
        )
        return lines.joined(separator: "\n")
    }

    static func count(_ rate: Double) -> String {
        rate >= 100 ? String(Int(rate.rounded())) : String(format: "%.1f", rate)
    }

    static func bytes(_ rate: Double) -> String {
        var value = rate
        for unit in ["B", "KiB", "MiB"] {
            if value < 1024 { return unit == "B" ? "\(Int(value)) B" : String(format: "%.1f ", value) + unit }
            value /= 1024
        }
        return String(format: "%.1f GiB", value)
    }
}
