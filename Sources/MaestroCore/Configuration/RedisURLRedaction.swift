internal import MaestroRedis

enum RedisURLRedaction {
    /// The URL with its password masked, as RedisURL describes itself.
    static func redact(_ text: String) throws -> String {
        try RedisURL(parsing: text).description
    }
}
