@preconcurrency internal import Crypto
public import MaestroRedis

/// Names of a sink's Kubernetes objects (DESIGN "Templates"): `otel-<sink id>` when that is a valid
/// DNS-1035 label, else `otel-<sanitised prefix>-<first 10 hex digits of SHA-256(id)>`, so that any id
/// maps to a valid name and different ids to different names.
public enum CollectorNaming {
    public static let maximumLength = 63

    public static func name(forSinkID sinkID: String) -> String {
        let direct = "otel-" + sinkID
        if isDNS1035Label(direct) { return direct }
        let digest = SHA256.hash(data: Array(sinkID.utf8)).prefix(5).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
        var prefix = ""
        var previousDash = true
        for character in sinkID.lowercased().unicodeScalars {
            let isAllowed = (character >= "a" && character <= "z") || (character >= "0" && character <= "9")
            if isAllowed {
                prefix.unicodeScalars.append(character)
                previousDash = false
            } else if !previousDash {
                prefix += "-"
                previousDash = true
            }
        }
        let room = maximumLength - "otel-".count - 1 - digest.count
        prefix = String(prefix.prefix(room))
        while prefix.hasSuffix("-") { prefix.removeLast() }
        return prefix.isEmpty ? "otel-" + digest : "otel-\(prefix)-\(digest)"
    }

    /// Lowercase letters, digits and '-', starting with a letter, not ending with '-', at most 63.
    public static func isDNS1035Label(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, let last = text.unicodeScalars.last, text.utf8.count <= maximumLength else { return false }
        guard first >= "a" && first <= "z", last != "-" else { return false }
        return text.unicodeScalars.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "-" }
    }
}

/// The pod-template annotation that rolls the pods when a config changes: HMAC-SHA256 keyed with a
/// random per-installation key, so that reading Deployments does not let anyone test guesses of a
/// password against a plain hash of the config.
public struct ConfigHasher: Sendable {
    private let key: SymmetricKey

    public init(keyHex: String) {
        key = SymmetricKey(data: OrbSecretCipher.hexBytes(keyHex) ?? Array(keyHex.utf8))
    }

    public func hash(_ config: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Array(config.utf8), using: key).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }

    /// A fresh random key (32 bytes, hex).
    public static func randomKeyHex() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { bytes in
            bytes.map { byte in
                let hex = String(byte, radix: 16)
                return hex.count == 1 ? "0" + hex : hex
            }.joined()
        }
    }

    /// The installation's key, created once: SET NX, so concurrent first starts agree on one key.
    public static func installationKey(_ redis: RedisConnection, names: RedisNames) throws(RedisError) -> String {
        if let key = try redis.get(names.configHashKey) { return key }
        try redis.set(names.configHashKey, randomKeyHex(), onlyIfAbsent: true)
        guard let key = try redis.get(names.configHashKey) else {
            throw RedisError(kind: .protocolViolation, message: "the config-hash key vanished right after it was created")
        }
        return key
    }

    /// `maestro render` without Redis uses this fixed key, and says so.
    public static let placeholderKeyHex = String(repeating: "00", count: 32)
}
