public import Logging
internal import CoreMetrics
internal import Foundation
internal import MaestroCore
internal import Synchronization

/// The plugins in use. A reload replaces the whole catalog; each worker picks the new one up between
/// batches, so an event in flight finishes on the plugins it started with.
public final class PluginGenerations: Sendable {
    private let state: Mutex<(number: Int, catalog: PluginCatalog)>

    public init(_ catalog: PluginCatalog) {
        state = Mutex((1, catalog))
    }

    public var current: (number: Int, catalog: PluginCatalog) { state.withLock { $0 } }

    public var catalog: PluginCatalog { current.catalog }

    /// Told each time a sinker worker moves to a newer generation. The worker has stored the batch it
    /// built on the older one by then, so a rebuild sweep asked for here sees that batch's records: the
    /// sweep asked for at the reload itself may scan before them, and would leave those sinks built by
    /// the old plugin until the next reload.
    public let workerMovedOn = GenerationListener()

    func replace(with catalog: PluginCatalog) {
        state.withLock { $0 = ($0.number + 1, catalog) }
    }
}

/// A callback set after construction and called from the sinker's worker threads (kept in a class, not
/// in a `Mutex` directly: see `SinkCallback`).
public final class GenerationListener: Sendable {
    private final class Box: Sendable {
        let call: @Sendable () -> Void

        init(_ call: @escaping @Sendable () -> Void) { self.call = call }
    }

    private let box = Mutex<Box?>(nil)

    public init() {}

    public func set(_ call: @escaping @Sendable () -> Void) {
        box.withLock { $0 = Box(call) }
    }

    public func callAsFunction() {
        box.withLock { $0 }?.call()
    }
}

/// What one reload did.
public struct ReloadReport: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case unchanged
        case reloaded
        /// The new files were refused (the reasons, each with file:line); the old generation stays.
        case refused([String])
    }
    public var plugins: Outcome = .unchanged
    public var templates: Outcome = .unchanged
    /// Collectors whose desired state changed with the new template.
    public var collectorsRerendered = 0
}

/// Reloads `plugins/` and `templates/` when their files change (polled) or when asked (SIGHUP). A new
/// generation is loaded and checked in fresh VMs first; a bad one is refused and the old one keeps
/// serving. A new template re-renders every collector's desired state; the reconciler rolls it out.
public final class HotReloader: @unchecked Sendable {
    /// Each closure gets the snapshot folder to load from (a private copy, see `SourceSnapshots`).
    public struct Sources: Sendable {
        public var pluginsRoot: String
        public var loadPlugins: @Sendable (String) -> PluginCatalog
        public var templatesRoot: String?
        /// Loads the template and renders a sample collector with it; throws what is wrong.
        public var checkTemplates: @Sendable (String) throws -> Void
        /// Switches the collector manager to the new template and re-renders; returns the collectors changed.
        public var applyTemplates: @Sendable (String) -> Int
        /// Told of each new generation of plugins once it is in use (the maestro role takes its
        /// component lists from it).
        public var pluginsReloaded: (@Sendable (PluginCatalog) -> Void)?

        public init(pluginsRoot: String, loadPlugins: @escaping @Sendable (String) -> PluginCatalog, templatesRoot: String?,
                    checkTemplates: @escaping @Sendable (String) throws -> Void, applyTemplates: @escaping @Sendable (String) -> Int) {
            self.pluginsRoot = pluginsRoot
            self.loadPlugins = loadPlugins
            self.templatesRoot = templatesRoot
            self.checkTemplates = checkTemplates
            self.applyTemplates = applyTemplates
        }
    }

    private let sources: Sources
    private let snapshots: SourceSnapshots
    private let generations: PluginGenerations
    private let interval: Double
    private let logger: Logger
    private let watcher = BackgroundThreads()
    /// A reload was asked for (SIGHUP) and has not run yet.
    private let forced = Mutex(false)
    /// Fingerprints of the files behind the generation in use (or last refused: an unchanged bad file is
    /// reported once, not at every poll). Read and written only inside `reloading` (after `init`): the
    /// reason this class is `@unchecked Sendable`.
    private var pluginPrint: UInt64
    private var templatePrint: UInt64
    private let reloading = Mutex(())

    /// `interval` 0 watches nothing: only `requestReload()` (SIGHUP) reloads.
    public init(sources: Sources, snapshots: SourceSnapshots, generations: PluginGenerations, interval: Double, logger: Logger) {
        self.sources = sources
        self.snapshots = snapshots
        self.generations = generations
        self.interval = interval
        self.logger = logger
        pluginPrint = Self.fingerprint(sources.pluginsRoot)
        templatePrint = sources.templatesRoot.map(Self.fingerprint) ?? 0
    }

    public func start() {
        watcher.spawn("maestro-reload") { [self] in loop() }
    }

    /// Reload both folders now, changed or not (SIGHUP).
    public func requestReload() {
        forced.withLock { $0 = true }
        watcher.wake()
    }

    /// Returns once the watcher's thread ended (after the reload in progress, if any).
    public func stop() {
        watcher.stop(timeout: nil)
    }

    private func loop() {
        while watcher.pause(interval > 0 ? interval : 3600, unless: { forced.withLock { $0 } }) {
            let force = forced.withLock { forced -> Bool in
                defer { forced = false }
                return forced
            }
            if !force && interval <= 0 { continue }
            _ = reload(force: force)
        }
    }

    /// Checks the folders and switches to what changed if it is good. Synchronous; one at a time.
    @discardableResult
    public func reload(force: Bool) -> ReloadReport {
        reloading.withLock { _ in
            var report = ReloadReport()
            let newPluginPrint = Self.fingerprint(sources.pluginsRoot)
            if force || newPluginPrint != pluginPrint {
                pluginPrint = newPluginPrint
                report.plugins = reloadPlugins()
            }
            if let templatesRoot = sources.templatesRoot {
                let newTemplatePrint = Self.fingerprint(templatesRoot)
                if force || newTemplatePrint != templatePrint {
                    templatePrint = newTemplatePrint
                    (report.templates, report.collectorsRerendered) = reloadTemplates(templatesRoot)
                }
            }
            if report.templates == .reloaded {
                logger.info("template reloaded", metadata: ["collectors.rerendered": "\(report.collectorsRerendered)"])
            }
            return report
        }
    }

    private func reloadPlugins() -> ReloadReport.Outcome {
        let snapshot: String
        do {
            snapshot = try snapshots.take(sources.pluginsRoot)
        } catch {
            return refuse("plugins", ["cannot copy \(sources.pluginsRoot): \(error)"])
        }
        let catalog = sources.loadPlugins(snapshot)
        var problems = catalog.failures.map { $0.message.replacingOccurrences(of: snapshot, with: sources.pluginsRoot) }
        if catalog.plugins.isEmpty && problems.isEmpty { problems.append("no plugins found in \(sources.pluginsRoot)") }
        guard problems.isEmpty else { return refuse("plugins", problems) }
        generations.replace(with: catalog)
        sources.pluginsReloaded?(catalog)
        Counter(label: "maestro_reloads_total", dimensions: [("what", "plugins"), ("result", "ok")]).increment()
        logger.info("plugins reloaded", metadata: ["plugins.loaded": "\(catalog.plugins.map { "\($0.name)@\($0.version)" }.joined(separator: ","))",
                                                   "plugins.generation": "\(generations.current.number)"])
        return .reloaded
    }

    private func reloadTemplates(_ templatesRoot: String) -> (ReloadReport.Outcome, Int) {
        let snapshot: String
        do {
            snapshot = try snapshots.take(templatesRoot)
        } catch {
            return (refuse("templates", ["cannot copy \(templatesRoot): \(error)"]), 0)
        }
        do {
            try sources.checkTemplates(snapshot)
        } catch {
            return (refuse("templates", ["\(error)".replacingOccurrences(of: snapshot, with: templatesRoot)]), 0)
        }
        Counter(label: "maestro_reloads_total", dimensions: [("what", "templates"), ("result", "ok")]).increment()
        return (.reloaded, sources.applyTemplates(snapshot))
    }

    private func refuse(_ what: String, _ problems: [String]) -> ReloadReport.Outcome {
        for problem in problems {
            logger.error("\(what) reload refused; the previous \(what) keep serving", metadata: ["error": "\(problem)"])
        }
        Counter(label: "maestro_reloads_total", dimensions: [("what", what), ("result", "refused")]).increment()
        return .refused(problems)
    }

    /// FNV-1a over every file's relative path and contents: an edit within the same second still counts.
    static func fingerprint(_ root: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
            for byte in bytes {
                hash ^= UInt64(byte)
                hash = hash &* 0x100_0000_01b3
            }
        }
        let files = (FileManager.default.enumerator(atPath: root)?.compactMap { $0 as? String } ?? []).sorted()
        for file in files {
            guard let data = FileManager.default.contents(atPath: root + "/" + file) else { continue }
            mix(file.utf8)
            mix([0])
            mix(data)
            mix([0])
        }
        return hash
    }
}

/// Private copies of `plugins/` and `templates/`, one per accepted generation: VMs created later (a new
/// worker, a VM rebuilt after its budget ran out) load the files that were checked, never a half-saved
/// or refused edit on disk.
public final class SourceSnapshots: @unchecked Sendable {
    public let base: String
    private let counter = Mutex(0)

    public init() throws {
        base = NSTemporaryDirectory() + "maestro-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
    }

    /// Copies `root` to `<base>/<n>/<name of root>` and returns that path.
    public func take(_ root: String) throws -> String {
        let number = counter.withLock { value in
            value += 1
            return value
        }
        let folder = base + "/\(number)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let copy = folder + "/" + (root as NSString).lastPathComponent
        try FileManager.default.copyItem(atPath: root, toPath: copy)
        return copy
    }

    public func removeAll() {
        try? FileManager.default.removeItem(atPath: base)
    }
}
