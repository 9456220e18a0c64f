internal import MaestroRedis
internal import Synchronization

/// What the reader, the reclaimer and the workers of one consumer share: the stop request; the entries
/// delivered to this consumer and not yet settled, so that a re-read or a reclaim page never hands one
/// out twice and the reclaimer refreshes exactly these; and the counters.
final class StreamConsumerLedger: Sendable {
    private struct State {
        var stopping = false
        var inFlight: Set<String> = []
        var counters = StreamConsumerCounters()
        /// The last trimmed gap reported, so that one gap is reported once.
        var lastTrimmedGap = ""
    }

    private let state = Mutex(State())

    var isStopping: Bool { state.withLock { $0.stopping } }

    func requestStop() { state.withLock { $0.stopping = true } }

    var counters: StreamConsumerCounters { state.withLock { $0.counters } }

    func count(_ update: (inout StreamConsumerCounters) -> Void) {
        state.withLock { update(&$0.counters) }
    }

    var inFlightCount: Int { state.withLock { $0.inFlight.count } }

    var inFlight: Set<String> { state.withLock { $0.inFlight } }

    /// Marks the entries as in flight here; returns those that were not already.
    func admit(_ entries: [StreamEntry]) -> [StreamEntry] {
        state.withLock { state in
            let fresh = entries.filter { !state.inFlight.contains($0.id) }
            for entry in fresh { state.inFlight.insert(entry.id) }
            return fresh
        }
    }

    /// The entries are settled (or left pending for the next start): no longer in flight here.
    func release(_ ids: [String]) {
        state.withLock { state in
            for id in ids { state.inFlight.remove(id) }
        }
    }

    /// Records `gap` as the last one reported; true when it differs from the one before.
    func noteTrimmedGap(_ gap: String) -> Bool {
        state.withLock { state -> Bool in
            defer { state.lastTrimmedGap = gap }
            return state.lastTrimmedGap != gap
        }
    }
}
