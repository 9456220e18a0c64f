public import Foundation

/// A child process started with posix_spawn and a clean signal state: redis-server for `maestro demo`,
/// credential plugins, and the processes tests start. Foundation's `Process` passes on the spawning
/// thread's blocked signals (thread pools block most of them), and a child that cannot see SIGTERM
/// never stops gracefully. A child gets standard input, output and error only.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let arguments: [String]
    private var exitStatus: Int32?

    /// Starts `arguments[0]` (a path) with `arguments`; output goes to `logPath` or /dev/null, and
    /// standard error with it unless `separateStandardError` (then to /dev/null).
    public init(_ arguments: [String], environment: [String: String]? = nil, logPath: String? = nil,
                separateStandardError: Bool = false) throws {
        self.arguments = arguments
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let output = logPath ?? "/dev/null"
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if separateStandardError {
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        // Nothing else is inherited: hiredis's sockets are not close-on-exec, and a child holding one
        // would hold maestro's authenticated Redis connection — and keep the socket open for its peer
        // after maestro closed it.
        guard let closeFrom, closeFrom(&actions, 3) == 0 else {
            throw ProcessError("cannot start \(arguments[0]): this C library cannot close inherited descriptors at spawn (glibc 2.34 or later can)")
        }

        let environmentPairs = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = environmentPairs.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let status = posix_spawn(&child, arguments[0], &actions, &attributes, &argv, &envp)
        guard status == 0 else { throw ProcessError("cannot start \(arguments[0]): \(String(cString: strerror(status)))") }
        pid = child
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            _ = wait()
        }
    }

    public var isRunning: Bool {
        if exitStatus != nil { return false }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid {
            exitStatus = status
            return false
        }
        return result == 0
    }

    public func signal(_ number: Int32) {
        if exitStatus == nil { kill(pid, number) }
    }

    /// Waits for the child and returns its wait status (see `exitCode`).
    @discardableResult
    public func wait() -> Int32 {
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        exitStatus = status
        return status
    }

    /// Waits at most `timeout` seconds; true when the child exited.
    public func wait(timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !isRunning { return true }
            usleep(10_000)
        }
        return !isRunning
    }

    /// The exit code, or 128 + signal for a child killed by a signal; nil while running.
    public var exitCode: Int32? {
        guard let status = exitStatus ?? (isRunning ? nil : exitStatus) else { return nil }
        if status & 0x7f == 0 { return (status >> 8) & 0xff }
        return 128 + (status & 0x7f)
    }
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), which its header declares only
/// for GNU sources: looked up by name, and called as the C function it is.
private let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? =
    dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np").map {
        unsafeBitCast($0, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }
