internal import Synchronization

/// The template in use and a pool of its renderers: renderers are used by one thread at a time, and
/// making one (a Lua VM with the template loaded) costs more than a render. A template change replaces
/// the factory; pooled renderers of an older template are dropped when next taken.
public final class CollectorTemplates: Sendable {
    public struct NoTemplate: Error, CustomStringConvertible {
        public var description: String { "no template is loaded" }
    }

    /// In a class, not a tuple: a closure kept directly in a `Mutex` gains two thunks at every
    /// `withLock`, once per render (see `SinkCallback`).
    private final class Template: Sendable {
        let generation: Int
        let make: (@Sendable () throws -> any CollectorRenderer)?

        init(generation: Int, make: (@Sendable () throws -> any CollectorRenderer)?) {
            self.generation = generation
            self.make = make
        }
    }

    private let current: Mutex<Template>
    private let pool = Mutex<[PooledRenderer]>([])

    public init(_ makeRenderer: (@Sendable () throws -> any CollectorRenderer)? = nil) {
        current = Mutex(Template(generation: 1, make: makeRenderer))
    }

    /// Which template is in use: it grows with each replacement.
    public var generation: Int { current.withLock { $0.generation } }

    /// Switches to another template (already checked by the caller).
    public func replace(_ makeRenderer: @escaping @Sendable () throws -> any CollectorRenderer) {
        current.withLock { $0 = Template(generation: $0.generation + 1, make: makeRenderer) }
        pool.withLock { $0.removeAll() }
    }

    public func render(_ inputs: CollectorInputs) throws -> RenderedCollector {
        let template = current.withLock { $0 }
        guard let make = template.make else { throw NoTemplate() }
        var box = pool.withLock { $0.popLast() }
        if box?.generation != template.generation {
            box = PooledRenderer(renderer: try make(), generation: template.generation)
        }
        let renderer = box!
        defer {
            pool.withLock { pool in
                if renderer.generation == current.withLock({ $0.generation }) { pool.append(renderer) }
            }
        }
        return try FlowTracing.span("render", attributes: { $0["maestro.sink.id"] = inputs.sinkID }) { _ in try renderer.renderer.render(inputs) }
    }
}

/// A renderer handed between threads by the pool; used by one thread at a time.
final class PooledRenderer: @unchecked Sendable {
    let renderer: any CollectorRenderer
    let generation: Int
    init(renderer: any CollectorRenderer, generation: Int) {
        self.renderer = renderer
        self.generation = generation
    }
}
