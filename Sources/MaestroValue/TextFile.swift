#if canImport(Glibc)
internal import Glibc
#endif

/// Whole-file reads without Foundation, for configuration, plugins and secrets.
public enum TextFile {
    /// The file's bytes as UTF-8 text (invalid sequences replaced), or nil when it cannot be read.
    public static func read(_ path: String) -> String? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count > 0 { bytes.append(contentsOf: buffer[0..<count]) }
            if count < buffer.count { break }
        }
        if ferror(file) != 0 { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
