import Testing

@testable import ClusterNode

/// Settings come from three sources and one table: anything that names no setting, and any
/// value that doesn't fit, stops the node with an error that says where it came from.
@Suite struct SettingsTests {
    private func configuration(
        flags: [String] = [],
        environment: [String: String] = [:],
        file: String? = nil
    ) throws -> NodeConfiguration {
        let config = try file.map { try ConfigFile(path: "node.json", contents: Array($0.utf8)) }
        return try NodeConfiguration(Settings(SettingSources(flags: flags, environment: environment, file: config)))
    }

    private func failure(flags: [String] = [], environment: [String: String] = [:], file: String? = nil) -> String {
        do {
            _ = try configuration(flags: flags, environment: environment, file: file)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    @Test func defaultsComeFromTheTable() throws {
        let node = try configuration()
        #expect(node.io.webSocketPort == 15674)
        #expect(node.io.stompPort == 61613)
        #expect(node.io.frameLimits.maxBodySize == 4_194_304)
        #expect(node.io.frameLimits.maxHeaderBytes == 262_144)
        #expect(node.io.maxWebSocketMessageSize == node.io.frameLimits.maxFrameSize + 1_024)
        #expect(node.admin.port == 8222)
        #expect(node.cluster == nil)
        #expect(node.drain.clientsPerSecond == 1_000)
    }

    @Test func flagsWinOverTheEnvironmentWhichWinsOverTheFile() throws {
        let file = #"{"ws": {"port": 1001}, "stomp.port": 2001, "limits": {"body-size": 3001}}"#
        let node = try configuration(
            flags: ["--ws-port", "1003", "--max-body-size=3003"],
            environment: ["CLUSTER_NODE_WS_PORT": "1002", "CLUSTER_NODE_STOMP_PORT": "2002", "PATH": "/bin"],
            file: file
        )
        #expect(node.io.webSocketPort == 1003)
        #expect(node.io.stompPort == 2002)
        #expect(node.io.frameLimits.maxBodySize == 3003)
    }

    @Test func aMisspeltEnvironmentVariableStopsTheNodeAndNamesTheRealOne() {
        let message = failure(environment: ["CLUSTER_NODE_SEEDS": "n1:7946"])
        #expect(message.contains("unknown environment variable CLUSTER_NODE_SEEDS"))
        #expect(message.contains("CLUSTER_NODE_CLUSTER_SEEDS"))
    }

    @Test func aMisspeltFileKeyOrFlagStopsTheNodeAndNamesTheClosest() {
        let fileMessage = failure(file: #"{"limits": {"body-sise": 10}}"#)
        #expect(fileMessage.contains("unknown key limits.body-sise in config file node.json"))
        #expect(fileMessage.contains("limits.body-size"))
        let flagMessage = failure(flags: ["--ws-prot", "1"])
        #expect(flagMessage.contains("unknown flag --ws-prot"))
        #expect(flagMessage.contains("--ws-port"))
        #expect(failure(flags: ["--ws-port"]).contains("needs a value"))
        #expect(failure(flags: ["stray"]).contains("unexpected argument 'stray'"))
    }

    @Test func anInvalidValueNamesItsSourceKeyAndValue() {
        let fromEnvironment = failure(environment: ["CLUSTER_NODE_WS_PORT": "notaport"])
        #expect(fromEnvironment.contains("'notaport'"))
        #expect(fromEnvironment.contains("ws.port"))
        #expect(fromEnvironment.contains("environment variable CLUSTER_NODE_WS_PORT"))
        let fromFile = failure(file: #"{"limits": {"body-size": "abc"}}"#)
        #expect(fromFile.contains("'abc'"))
        #expect(fromFile.contains("config file node.json (key limits.body-size)"))
        let fromFlag = failure(flags: ["--heartbeat-grace", "0.5"])
        #expect(fromFlag.contains("flag --heartbeat-grace"))
        #expect(fromFlag.contains("at least 1"))
        #expect(failure(flags: ["--ws-port", "70000"]).contains("up to 65535"))
        // A flag that overrides a wrong value doesn't hide it.
        #expect(
            failure(flags: ["--ws-port", "1"], environment: ["CLUSTER_NODE_WS_PORT": "x"]).contains(
                "environment variable CLUSTER_NODE_WS_PORT"
            )
        )
        #expect(failure(flags: ["--log-level", "loud"]).contains("expected one of trace"))
        #expect(failure(file: #"{"limits": {"body-size": 0}}"#).contains("expected at least 1"))
        #expect(failure(file: "[1]").contains("must hold a JSON object"))
        #expect(failure(file: "{").contains("not valid JSON"))
    }

    @Test func clusterSettingsWithoutClusteringStopTheNode() {
        #expect(
            failure(environment: ["CLUSTER_NODE_CLUSTER_SEEDS": "n1:7946"]).contains(
                "cluster.seeds is set but clustering is off: set cluster.secret"
            )
        )
        let secret = ["CLUSTER_NODE_CLUSTER_SECRET": "0123456789abcdef0123"]
        #expect(
            failure(flags: ["--cluster-port=-1", "--seeds", "n1:7946"], environment: secret).contains(
                "cluster.port is negative"
            )
        )
        // The port alone may turn clustering off.
        #expect(failure(flags: ["--cluster-port=-1"], environment: secret) == "no error")
    }

    @Test func aSecretComesFromAValueOrAFileNeverBoth() {
        #expect(
            failure(
                flags: ["--cluster-secret-file", "/nonexistent"],
                environment: ["CLUSTER_NODE_CLUSTER_SECRET": "0123456789abcdef0123"]
            ).contains("cluster.secret and cluster.secret-file are both set")
        )
        #expect(
            failure(flags: ["--admin-token", "t", "--admin-token-file", "/nonexistent"]).contains(
                "admin.token and admin.token-file are both set"
            )
        )
    }

    @Test func anEmptyListIsRefusedAndAFlagValueMayHoldEqualsSigns() throws {
        #expect(failure(environment: ["CLUSTER_NODE_CLUSTER_SEEDS": " , "]).contains("at least one entry"))
        let node = try configuration(flags: ["--admin-token=a=b=c"])
        #expect(node.admin.token == "a=b=c")
    }

    @Test func aSecretIsNeverEchoed() {
        let message = failure(environment: ["CLUSTER_NODE_CLUSTER_SECRET": "short"])
        #expect(message.contains("at least 16 bytes"))
        #expect(!message.contains("short'"))
        let invalid = SettingsError.invalid(
            SettingsTable.setting("admin.token"),
            "hunter2",
            from: .flag("--admin-token"),
            Setting.Rejection("x")
        )
        #expect(!invalid.description.contains("hunter2"))
    }

    @Test func withSeedsANodeWaitsForOnePeerUnlessToldOtherwise() throws {
        let secret = ["CLUSTER_NODE_CLUSTER_SECRET": "0123456789abcdef0123"]
        let alone = try configuration(environment: secret)
        #expect(alone.cluster?.minimumMembers == 1)
        let seeded = try configuration(
            environment: secret.merging(["CLUSTER_NODE_CLUSTER_SEEDS": "n1:7946, n2:7946"]) { $1 }
        )
        #expect(seeded.cluster?.seeds == ["n1:7946", "n2:7946"])
        #expect(seeded.cluster?.minimumMembers == 2)
        let first = try configuration(flags: ["--seeds", "n2:7946", "--cluster-min-members", "1"], environment: secret)
        #expect(first.cluster?.minimumMembers == 1)
        let listed = try configuration(environment: secret, file: #"{"cluster": {"seeds": ["a:1", "b:2"]}}"#)
        #expect(listed.cluster?.seeds == ["a:1", "b:2"])
    }

    @Test func theAdminAddressFollowsTheClusterAddressUnlessGiven() throws {
        let secret = ["CLUSTER_NODE_CLUSTER_SECRET": "0123456789abcdef0123"]
        let node = try configuration(
            flags: ["--admin-host", "0.0.0.0", "--admin-token", "t", "--cluster-advertise", "n1:7946"],
            environment: secret
        )
        #expect(node.adminAddress(boundPort: 8222) == "n1:8222")
        let loopback = try configuration()
        #expect(loopback.adminAddress(boundPort: 9000) == "127.0.0.1:9000")
        let given = try configuration(flags: ["--admin-advertise", "admin.example:80"])
        #expect(given.adminAddress(boundPort: 8222) == "admin.example:80")
    }

    @Test func everyNameIsUniqueAndEveryDefaultIsValid() {
        let all = SettingsTable.all
        #expect(Set(all.map(\.key)).count == all.count)
        #expect(Set(all.map(\.flag)).count == all.count)
        #expect(Set(all.map(\.environmentName)).count == all.count)
        #expect(Set(all.map(\.flag)).isDisjoint(with: SettingsDocument.commandLineOptions))
        for setting in all {
            if case .value(let text) = setting.defaultValue {
                guard case .success = setting.parse(text) else {
                    Issue.record("the default of \(setting.key) (\(text)) is not valid")
                    continue
                }
            }
        }
    }

    @Test func theDocumentsListEverySetting() {
        let markdown = SettingsDocument.markdown
        let json = SettingsDocument.json
        for setting in SettingsTable.all {
            #expect(markdown.contains("`\(setting.flag)` | `\(setting.key)`"))
            #expect(json.contains("\"\(setting.environmentName)\""))
        }
    }

    @Test func theClosestNameIsFoundByEditDistance() {
        #expect(SettingSources.editDistance(Array("kitten".utf8), Array("sitting".utf8)) == 3)
        #expect(
            SettingSources.closest(to: "CLUSTER_NODE_LIMIT_BODY_SIZE", by: \.environmentName)?.key == "limits.body-size"
        )
    }
}

/// The admin API on loopback answers only requests that name loopback in `Host`.
@Suite struct AdminHostTests {
    @Test func loopbackNamesWithAndWithoutPorts() {
        for host in ["localhost", "LOCALHOST:8222", "127.0.0.1", "127.0.0.1:8222", "[::1]", "[::1]:8222", "::1"] {
            #expect(AdminAPI.namesLoopback(host), "\(host)")
        }
        for host in [
            "evil.example", "evil.example:8222", "127.0.0.1.evil.example", "localhost.evil.example:80", "[::2]:8222",
            "",
        ] {
            #expect(!AdminAPI.namesLoopback(host), "\(host)")
        }
    }
}
