import Foundation
import Logging
import MaestroPluginHost
import ServiceLifecycle
import Synchronization
import UnixSignals

/// A part started before the group runs: it waits for graceful shutdown, then stops on a thread of
/// its own (the parts' stops block until in-flight work is done).
struct StoppingService: Service {
    let name: String
    let stop: @Sendable () -> Void

    init(name: String, stop: @escaping @Sendable () -> Void) {
        self.name = name
        self.stop = stop
    }

    func run() async throws {
        // Cancellation (the shutdown deadline passed) also ends the wait; the part is stopped either way.
        try? await gracefulShutdown()
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                stop()
                done.resume()
            }
        }
    }
}

struct AsyncStoppingService: Service {
    let name: String
    let stop: @Sendable () async -> Void

    func run() async throws {
        try? await gracefulShutdown()
        await stop()
    }
}

/// SIGHUP reloads plugins and templates; the reloader's own thread also watches the files.
struct ReloadOnHangup: Service {
    let reloader: HotReloader

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        for await _ in hangups.cancelOnGracefulShutdown() {
            reloader.requestReload()
        }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                reloader.stop()
                done.resume()
            }
        }
    }
}

/// The first SIGTERM/SIGINT starts the graceful shutdown (the group's own handler); a second one
/// exits at once. Shut down last, so it listens during the whole drain.
struct SecondSignalExit: Service {
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        var received = 0
        for await signal in signals.cancelOnGracefulShutdown() {
            received += 1
            if received >= 2 {
                logger.warning("second signal: exiting without waiting for in-flight work", metadata: ["signal": "\(signal)"])
                exit(130)
            }
        }
    }
}

/// Set when the graceful shutdown starts: /readyz and the gRPC health service report not serving, so
/// the load balancer stops sending calls while the drain runs.
final class DrainFlag: Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    func set() { state.withLock { $0 = true } }
}
