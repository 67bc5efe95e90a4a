import FuzzDriver

#if canImport(Glibc)
import Glibc
#endif

/// Runs libFuzzer on `LLVMFuzzerTestOneInput` (see `FuzzDriver` for why a `main` is needed).
@main
enum FuzzMain {
    static func main() {
        exit(FuzzDriver.run { data, size in data.map { fuzz($0, size) } ?? 0 })
    }
}
