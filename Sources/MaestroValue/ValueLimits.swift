/// Bounds on a value built from input that may be hostile (a JSON or YAML text, a Lua table): how many
/// nodes it may have and how many bytes it may take. A node is a scalar or a collection, counted every
/// time it is reached — a YAML alias or a Lua sub-table shared twice counts twice — so a small input
/// that expands (a "billion laughs", `t = {t, t}` twenty times) is refused instead of expanded. Bytes
/// are the strings' lengths plus `bytesPerNode` for every node; the limits hold across the whole input
/// (every document of a YAML stream, every argument of a call).
public struct ValueLimits: Sendable, Equatable {
    public var maximumNodes: Int
    public var maximumBytes: Int

    /// What a node is charged besides its string bytes: about what a small Lua table, or a `Value` in a
    /// Swift collection, takes.
    public static let bytesPerNode = 64

    /// One million nodes, 256 MiB: for input with no memory cap of its own to answer to.
    public static let `default` = ValueLimits(maximumNodes: 1_000_000, maximumBytes: 256 << 20)

    public init(maximumNodes: Int, maximumBytes: Int) {
        self.maximumNodes = maximumNodes
        self.maximumBytes = maximumBytes
    }

    /// The limits for values that must fit a memory cap of `bytes` (0 = no cap: the defaults): at most
    /// the cap in bytes, and never more nodes than the default.
    public static func memoryCap(_ bytes: Int) -> ValueLimits {
        guard bytes > 0 else { return .default }
        return ValueLimits(maximumNodes: min(ValueLimits.default.maximumNodes, bytes / bytesPerNode), maximumBytes: bytes)
    }
}

/// A running count of nodes and bytes against `ValueLimits`.
public struct ValueBudget: Sendable {
    public let limits: ValueLimits
    public private(set) var nodes = 0
    public private(set) var bytes = 0

    public init(_ limits: ValueLimits) {
        self.limits = limits
    }

    /// Counts one node holding `stringBytes` bytes of text. Returns nil while within the limits, else
    /// what was exceeded ("more than 1000000 nodes"), for the caller's error message.
    public mutating func charge(stringBytes: Int = 0) -> String? {
        nodes += 1
        bytes += ValueLimits.bytesPerNode + stringBytes
        if nodes > limits.maximumNodes { return "more than \(limits.maximumNodes) nodes" }
        if bytes > limits.maximumBytes { return "more than \(limits.maximumBytes) bytes" }
        return nil
    }

    /// Counts `count` nodes holding `stringBytes` bytes at once (a YAML alias of an anchored value).
    public mutating func charge(nodes count: Int, stringBytes: Int) -> String? {
        nodes += count
        bytes += count * ValueLimits.bytesPerNode + stringBytes
        if nodes > limits.maximumNodes { return "more than \(limits.maximumNodes) nodes" }
        if bytes > limits.maximumBytes { return "more than \(limits.maximumBytes) bytes" }
        return nil
    }
}
