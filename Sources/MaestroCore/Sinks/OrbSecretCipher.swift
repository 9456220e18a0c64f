@preconcurrency internal import Crypto
public import MaestroValue

/// Orb's encryption of sink credentials (reference §3.4): AES-256-GCM, key = SHA-256 of the secret,
/// stored as lowercase hex of nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes), no associated data.
public struct OrbSecretCipher: Sendable {
    private let key: SymmetricKey

    public init(secret: String) {
        key = SymmetricKey(data: SHA256.hash(data: Array(secret.utf8)))
    }

    /// The plaintext when `text` is Orb ciphertext under this key; nil when it is not hex, too short, or
    /// the tag does not authenticate (then the value is taken as plaintext, as Orb does).
    public func decrypt(_ text: String) -> String? {
        guard text.utf8.count >= 2 * (12 + 16) + 2, text.utf8.count % 2 == 0, let bytes = Self.hexBytes(text) else { return nil }
        do {
            let box = try AES.GCM.SealedBox(combined: bytes)
            let plain = try AES.GCM.open(box, using: key)
            return String(decoding: plain, as: UTF8.self)
        } catch {
            return nil
        }
    }

    /// Encrypts as Orb does (a random nonce each time).
    public func encrypt(_ plaintext: String) -> String {
        // Sealing with a fresh random nonce cannot fail for in-memory data of this size.
        let box = try! AES.GCM.seal(Array(plaintext.utf8), using: key)
        return box.combined!.map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }

    /// Decrypts the credential fields Orb encrypts (`authentication.password`, `authentication.token`)
    /// in place when they are ciphertext under this key.
    public func decryptCredentials(in config: Value) -> Value {
        guard case .map(var entries) = config, case .map(var authentication)? = entries["authentication"] else { return config }
        for field in ["password", "token"] {
            if case .string(let text)? = authentication[field], let plain = decrypt(text) {
                authentication[field] = .string(plain)
            }
        }
        entries["authentication"] = .map(authentication)
        return .map(entries)
    }

    public static func hexBytes(_ text: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count / 2)
        var high: UInt8?
        for character in text.utf8 {
            let nibble: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = character - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = character - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = character - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let first = high {
                bytes.append(first << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        return high == nil ? bytes : nil
    }
}
