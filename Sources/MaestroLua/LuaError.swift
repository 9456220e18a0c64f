/// Why a Lua load or call failed.
public struct LuaError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The chunk does not compile.
        case syntax
        /// The code raised an error (`error()`, a bad argument to a host function, …): worth a retry.
        case runtime
        /// The call ran past its instruction budget. Terminal: the VM is replaced before the next call.
        case instructionBudget
        /// The VM ran past its memory cap. Terminal: the VM is replaced before the next call.
        case memoryCap
        /// The code called `maestro.fail(msg)`: a terminal failure, no retry.
        case failed
        /// The code called `maestro.reject(path, msg)`: the input is the user's mistake (the message
        /// says which); no retry, and the VM is kept (nothing went wrong inside it).
        case rejected
        /// A value could not cross between Lua and Swift (a function, a mixed or sparse table, …).
        case conversion
        /// A module file could not be read or has no such function.
        case notFound
    }

    public let kind: Kind
    /// The message, starting with `file:line:` where Lua knows it.
    public let message: String
    /// Lua's stack traceback, when there was one.
    public let traceback: String?

    public init(kind: Kind, message: String, traceback: String? = nil) {
        self.kind = kind
        self.message = message
        self.traceback = traceback
    }

    public var description: String { message }

    /// Errors that mean "do not retry": the same input will fail the same way.
    public var isTerminal: Bool {
        switch kind {
        case .instructionBudget, .memoryCap, .failed, .rejected, .syntax, .conversion, .notFound: return true
        case .runtime: return false
        }
    }
}

/// An error raised by a host function; Lua sees `<function name>: <message>`.
public struct LuaHostError: Error, CustomStringConvertible {
    public let message: String
    /// A terminal failure (`maestro.fail`): no sandboxed pcall can catch it and the call fails for good.
    public let isTerminal: Bool
    /// A rejection of the input (`maestro.reject`): as uncatchable as a terminal failure, reported as
    /// `LuaError.Kind.rejected` with this message.
    public let isRejection: Bool

    public init(_ message: String, terminal: Bool = false) {
        self.message = message
        self.isTerminal = terminal
        self.isRejection = false
    }

    private init(rejection message: String) {
        self.message = message
        self.isTerminal = true
        self.isRejection = true
    }

    /// The user's input is wrong: the call ends, and the caller gets `.rejected` with `message`.
    public static func rejection(_ message: String) -> LuaHostError { LuaHostError(rejection: message) }
    public var description: String { message }

    public static func badArgument(_ position: Int, _ problem: String) -> LuaHostError {
        LuaHostError("bad argument #\(position) (\(problem))")
    }
}
