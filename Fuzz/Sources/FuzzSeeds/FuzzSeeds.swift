#if canImport(Glibc)
import Glibc
#endif

/// Writes the seed corpus (`Fuzz/Corpus/<target>/`): run it from the repository root as
/// `.build-fuzz/release/FuzzSeeds Fuzz/Corpus`. It is built with the fuzz targets, in the
/// same configuration, so that it costs no second build of the dependencies.
@main
enum FuzzSeeds {
    static func main() {
        let arguments = CommandLine.arguments
        guard arguments.count == 2 else {
            print("usage: FuzzSeeds CORPUS_DIRECTORY")
            exit(1)
        }
        var written = 0
        for (target, seeds) in [
            ("FuzzStompSession", StompSeeds.all),
            ("FuzzWebSocket", WebSocketSeeds.all),
            ("FuzzLinkFrame", LinkSeeds.frames),
            ("FuzzLinkHandshake", LinkSeeds.handshakes),
            ("FuzzReplication", ReplicationSeeds.all),
        ] {
            for (name, bytes) in seeds {
                write(bytes, to: "\(arguments[1])/\(target)/\(name)")
                written += 1
            }
        }
        print("wrote \(written) seeds under \(arguments[1])")
    }
}

private func write(_ bytes: [UInt8], to path: String) {
    guard let file = fopen(path, "wb") else {
        print("cannot open \(path) (does its directory exist?)")
        exit(1)
    }
    defer { fclose(file) }
    guard fwrite(bytes, 1, bytes.count, file) == bytes.count else {
        print("cannot write \(path)")
        exit(1)
    }
}
