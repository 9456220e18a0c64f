internal import Foundation

/// A bounded queue between the reader and one worker.
final class WorkQueue: @unchecked Sendable {
    // Every stored property below is read and written only while `condition` is locked.
    private let condition = NSCondition()
    private var items: [DeliveredEntry] = []
    private var closed = false
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Blocks while full; false when the queue was closed.
    func push(_ item: DeliveredEntry) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while items.count >= capacity && !closed { condition.wait() }
        guard !closed else { return false }
        items.append(item)
        condition.broadcast()
        return true
    }

    /// Up to `max` items, waiting at most `timeout` seconds for the first.
    func take(max: Int, timeout: TimeInterval) -> (items: [DeliveredEntry], closed: Bool) {
        condition.lock()
        defer { condition.unlock() }
        if items.isEmpty && !closed && timeout > 0 {
            _ = condition.wait(until: Date().addingTimeInterval(timeout))
        }
        let count = min(max, items.count)
        let taken = Array(items.prefix(count))
        items.removeFirst(count)
        if count > 0 { condition.broadcast() }
        return (taken, closed)
    }

    /// Everything still queued (after `close`).
    func drain() -> [DeliveredEntry] {
        condition.lock()
        defer { condition.unlock() }
        let remaining = items
        items.removeAll()
        condition.broadcast()
        return remaining
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}
