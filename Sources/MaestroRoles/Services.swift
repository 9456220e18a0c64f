import Foundation
public import Logging
import MaestroPluginHost
public import ServiceLifecycle
import Synchronization
import UnixSignals

struct AsyncStoppingService: Service {
    let name: String
    let stop: @Sendable () async -> Void

    func run() async throws {
        try? await gracefulShutdown()
        await stop()
    }
}

/// SIGHUP reloads plugins and templates; the reloader's own thread (a `BackgroundService` of its own)
/// also watches the files.
struct ReloadOnHangup: Service {
    let reloader: HotReloader

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        for await _ in hangups.cancelOnGracefulShutdown() {
            reloader.requestReload()
        }
    }
}

/// SIGTERM and SIGINT, caught from the first line of `maestro run` (a signal during start-up must not
/// kill the process with events half-read): the first asks the service group for a graceful shutdown —
/// remembered if the group does not exist yet — and a second exits at once with code 130.
public final class TerminationSignals: @unchecked Sendable {
    private let lock = NSLock()
    private var received = 0
    private var group: ServiceGroup?
    private var sources: [any DispatchSourceSignal] = []
    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
        // A SIGHUP before the reload watcher listens would terminate the process: ignore it until then.
        signal(SIGHUP, SIG_IGN)
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in handle(number) }
            source.resume()
            sources.append(source)
        }
    }

    private func handle(_ number: Int32) {
        lock.lock()
        received += 1
        let count = received
        let group = self.group
        lock.unlock()
        if count >= 2 {
            logger.warning("second signal: exiting without waiting for in-flight work", metadata: ["process.signal": "\(number)"])
            exit(130)
        }
        logger.info("signal received: shutting down gracefully", metadata: ["process.signal": "\(number)"])
        if let group { Task { await group.triggerGracefulShutdown() } }
    }

    /// Hands the group over; a signal that came before is delivered now.
    public func attach(_ group: ServiceGroup) async {
        let pending = lock.withLock { () -> Bool in
            self.group = group
            return received > 0
        }
        if pending { await group.triggerGracefulShutdown() }
    }
}

/// Set when the graceful shutdown starts: /readyz and the gRPC health service report not serving, so
/// the load balancer stops sending calls while the drain runs.
final class DrainFlag: Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    func set() { state.withLock { $0 = true } }
}
