#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `cluster-node hash-password`: reads a password on standard input (without echo at a
/// terminal) and prints the PHC string to paste into the users file.
enum HashPasswordCommand {
    static let name = "hash-password"

    static func run() throws -> Int32 {
        let terminal = isatty(STDIN_FILENO) == 1
        if terminal { writeUnbuffered("password: ", to: STDOUT_FILENO) }
        let password = withEchoOff(terminal) { readLine(strippingNewline: true) }
        if terminal { print("") }
        guard let password, !password.isEmpty else {
            writeUnbuffered("cluster-node hash-password: no password on standard input\n", to: STDERR_FILENO)
            return 64
        }
        print(try PasswordHash.make(password: password))
        return 0
    }

    /// Runs `body` with the terminal's echo off, so the password isn't shown as it is typed.
    private static func withEchoOff<T>(_ terminal: Bool, _ body: () -> T) -> T {
        guard terminal else { return body() }
        var saved = termios()
        tcgetattr(STDIN_FILENO, &saved)
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet)
        defer { tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
        return body()
    }
}
