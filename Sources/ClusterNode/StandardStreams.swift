#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes straight to a standard stream's descriptor: unbuffered, so a prompt shows before
/// the read that follows it, and free of the C library's global `FILE` pointers.
func writeUnbuffered(_ text: String, to descriptor: Int32) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
}
