/// Invalid input: printed as "maestro: <message>", exit code 2.
public struct InvalidInput: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}
