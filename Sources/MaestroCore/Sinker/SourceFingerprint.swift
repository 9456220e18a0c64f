@preconcurrency internal import Crypto
internal import Foundation

/// A stable digest of the files that make a plugin what it is (a plugin folder, the shared library it
/// requires, its settings): equal contents give equal fingerprints whatever the folder is called or
/// when it was copied, so a reload that changed nothing a plugin uses changes none of its sinks.
public enum SourceFingerprint {
    /// SHA-256 (hex, first 16 bytes) over each folder's files — label, relative path and contents, in
    /// path order — then `extra`. `skipping` returns true for the relative paths that do not count.
    public static func of(folders: [(label: String, path: String)], extra: String = "",
                          skipping: (String) -> Bool = { _ in false }) -> String {
        var hasher = SHA256()
        func mix(_ text: String) {
            hasher.update(data: Array(text.utf8))
            hasher.update(data: [0])
        }
        for (label, path) in folders {
            let files = (FileManager.default.enumerator(atPath: path)?.compactMap { $0 as? String } ?? []).sorted()
            for file in files where !skipping(file) {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path + "/" + file, isDirectory: &isDirectory), !isDirectory.boolValue,
                      let data = FileManager.default.contents(atPath: path + "/" + file) else { continue }
                mix(label + "/" + file)
                hasher.update(data: [UInt8](data))
                hasher.update(data: [0])
            }
        }
        mix(extra)
        return hasher.finalize().prefix(16).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
