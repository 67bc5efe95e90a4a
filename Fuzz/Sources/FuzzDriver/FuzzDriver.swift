import CLibFuzzer

/// Hands the process over to libFuzzer.
///
/// SwiftPM links an executable target's entry point as `<Target>_main` and points `main` at
/// it, which leaves libFuzzer's own `main` out. So each target has a Swift `@main` that
/// calls this, and libFuzzer's documented entry for a custom `main`, `LLVMFuzzerRunDriver`,
/// runs it with the program's arguments as usual.
public enum FuzzDriver {
    /// One execution of a target: the input's bytes and length; returns 0.
    public typealias TestOneInput = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

    /// Runs libFuzzer with the process's arguments.
    ///
    /// - Parameter testOneInput: the target's `LLVMFuzzerTestOneInput`.
    /// - Returns: libFuzzer's exit status, for `exit`.
    public static func run(_ testOneInput: TestOneInput) -> CInt {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        return LLVMFuzzerRunDriver(&argc, &argv, testOneInput)
    }
}
