internal import Synchronization

/// The template in use and a pool of its renderers: renderers are used by one thread at a time, and
/// making one (a Lua VM with the template loaded) costs more than a render. A template change replaces
/// the factory; pooled renderers of an older template are dropped when next taken.
public final class CollectorTemplates: Sendable {
    public struct NoTemplate: Error, CustomStringConvertible {
        public var description: String { "no template is loaded" }
    }

    private let current: Mutex<(generation: Int, make: (@Sendable () throws -> any CollectorRenderer)?)>
    private let pool = Mutex<[PooledRenderer]>([])

    public init(_ makeRenderer: (@Sendable () throws -> any CollectorRenderer)? = nil) {
        current = Mutex((1, makeRenderer))
    }

    /// Which template is in use: it grows with each replacement.
    public var generation: Int { current.withLock { $0.generation } }

    /// Switches to another template (already checked by the caller).
    public func replace(_ makeRenderer: @escaping @Sendable () throws -> any CollectorRenderer) {
        current.withLock { $0 = ($0.generation + 1, makeRenderer) }
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
        return try renderer.renderer.render(inputs)
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
