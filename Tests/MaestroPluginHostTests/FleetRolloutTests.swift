import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroPluginHost

/// Fleet changes in waves against the API double with its asynchronous controller: a template change
/// reaches a canary first, then growing waves never more than `--rollout-max-unavailable` rolling at once
/// (counted by the double: Deployments whose rollout is in progress); a change whose canary crash-loops
/// halts by itself and `abort` leaves every collector on its previous desired state; `pause` holds,
/// `abort` restores the collectors reached, `resume` releases the change again. A sink's own config
/// change is not held.
@Suite("Fleet rollouts: canary, gate, waves, halt, pause, resume, abort", .serialized, .testThreads, .timeLimit(.minutes(10)))
struct FleetRolloutTests {
    static let oldImage = "otel/opentelemetry-collector-contrib:0.91.0"

    static func template(image: String) -> @Sendable () throws -> any CollectorRenderer {
        { try TemplateRenderer(root: repositoryRoot + "/templates", settings: .map(["image": .string(image)])) }
    }

    /// Deployment name → the image its pod template runs, as the cluster has it.
    static func images(_ fixture: WatchingFixture) throws -> [String: String] {
        let items = try fixture.double.get("/apis/apps/v1/namespaces/otelcollectors/deployments").body["items"]?.listValue ?? []
        var images: [String: String] = [:]
        for item in items {
            guard let name = item["metadata"]?["name"]?.stringValue else { continue }
            images[name] = item["spec"]?["template"]?["spec"]?["containers"]?.listValue?.first?["image"]?.stringValue ?? ""
        }
        return images
    }

    static func rollout(_ fixture: WatchingFixture) -> FleetRolloutState? {
        FleetRolloutState(json: try? fixture.reconciler.storage.fleetRollout())
    }

    static func doubleStat(_ fixture: WatchingFixture, _ key: String) throws -> Int {
        Int(try fixture.double.stats()[key]?.intValue ?? -1)
    }

    static func fleet(_ count: Int, options: FleetRolloutOptions) throws -> (WatchingFixture, RedisConnection, [String]) {
        let fixture = try WatchingFixture(options: ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: 1, rolloutTimeout: 600, fleet: options))
        let redis = try fixture.pipeline.connect()
        let sinkIDs = (0..<count).map { String(format: "f%03d", $0) }
        return (fixture, redis, sinkIDs)
    }

    static func allActive(_ fixture: WatchingFixture, _ sinkIDs: [String]) -> Bool {
        (try? fixture.manager.list().filter { $0.status == "active" }.count) == sinkIDs.count
    }

    @Test("a template change to 200 collectors: a canary first, then growing waves, never more than --rollout-max-unavailable rolling at once")
    func wavesWithinTheLimit() throws {
        let (fixture, redis, sinkIDs) = try Self.fleet(200, options: FleetRolloutOptions(canaryPercent: 5, gateTimeout: 120, maxUnavailable: 20))
        try fixture.double.controller(["surge": true, "pod_start_seconds": 0.3])
        fixture.start()
        defer { fixture.stop() }
        try fixture.create(redis, sinkIDs)
        #expect(eventually(timeout: 240) { Self.allActive(fixture, sinkIDs) })
        #expect(eventually(timeout: 60) { (try? Self.doubleStat(fixture, "rolling")) == 0 })
        _ = try fixture.double.post("/_double/reset-stats", .map([:]))

        let newImage = "otel/opentelemetry-collector-contrib:0.92.0"
        #expect(fixture.manager.replaceTemplates(Self.template(image: newImage)) == 200)
        // The canary is released alone: 5% of 200.
        #expect(eventually(timeout: 30) { (Self.rollout(fixture)?.waves ?? 0) >= 1 })
        let first = try #require(Self.rollout(fixture))
        #expect(first.canary == 10)
        #expect(first.reached.values.filter { $0.wave == 1 }.count == 10, "\(first.summary)")
        #expect(try Self.images(fixture).values.filter { $0 == newImage }.count <= 10, "only the canary has the new render before its gate")

        #expect(eventually(timeout: 400) { Self.rollout(fixture)?.phase == .completed }, "\(Self.rollout(fixture)?.summary ?? "none")")
        let done = try #require(Self.rollout(fixture))
        #expect(done.count(.healthy) == 200 && done.count(.failed) == 0 && done.pending.isEmpty, "\(done.summary)")
        // Waves grow: 10, 20, 20, … (doubling, capped by the limit).
        let sizes = (1...done.waves).map { wave in done.reached.values.filter { $0.wave == wave }.count }
        #expect(sizes.first == 10 && sizes.dropFirst().allSatisfy { $0 <= 20 } && sizes.contains(20), "\(sizes)")
        #expect(try Self.images(fixture).values.allSatisfy { $0 == newImage })
        #expect(eventually { Self.allActive(fixture, sinkIDs) })
        let maxRolling = try Self.doubleStat(fixture, "max_rolling")
        #expect(maxRolling >= 1 && maxRolling <= 20, "the double saw \(maxRolling) Deployments rolling at once")
    }

    @Test("a template change whose canary crash-loops halts after the canary, says why; abort leaves every collector on its previous desired state")
    func crashingCanaryHalts() throws {
        let (fixture, redis, sinkIDs) = try Self.fleet(20, options: FleetRolloutOptions(canaryPercent: 5, gateTimeout: 120, maxUnavailable: 5))
        try fixture.double.controller(["surge": true, "pod_start_seconds": 0.3, "crash_when_image_contains": "crashing"])
        fixture.start()
        defer { fixture.stop() }
        try fixture.create(redis, sinkIDs)
        #expect(eventually(timeout: 120) { Self.allActive(fixture, sinkIDs) })

        let bad = "otel/opentelemetry-collector-contrib:0.92.0-crashing"
        #expect(fixture.manager.replaceTemplates(Self.template(image: bad)) == 20)
        #expect(eventually(timeout: 120) { Self.rollout(fixture)?.phase == .halted }, "\(Self.rollout(fixture)?.summary ?? "none")")
        let halted = try #require(Self.rollout(fixture))
        #expect(halted.waves == 1 && halted.canary == 1 && halted.count(.failed) == 1 && halted.pending.count == 19, "\(halted.summary)")
        #expect(halted.reason.contains("1 of 1 collectors rolled failed") && halted.reason.contains("CrashLoopBackOff"), "\(halted.reason)")
        #expect(halted.summary.contains("halted") && halted.summary.contains("why: "), "\(halted.summary)")
        // Nothing beyond the canary saw the change, even after every queued pass ran.
        #expect(RolloutTests.settled(fixture))
        #expect(try Self.images(fixture).values.filter { $0 == bad }.count <= 1)

        try fixture.reconciler.storage.requestFleetRollout(FleetRolloutRequest.abort.encoded)
        #expect(eventually(timeout: 60) { Self.rollout(fixture)?.phase == .aborted })
        #expect(try eventually(timeout: 60) { try Self.images(fixture).values.allSatisfy { $0 == Self.oldImage } }, "\((try? Self.images(fixture)) ?? [:])")
        // The aborted change stays held: a resync re-renders every collector and applies none of it.
        try fixture.reconciler.resync()
        #expect(RolloutTests.settled(fixture))
        #expect(try Self.images(fixture).values.allSatisfy { $0 == Self.oldImage })
        #expect(try Self.images(fixture).count == 20)
    }

    @Test("pause holds the waves (a sink's own config change is not held), abort returns the collectors reached to their previous render, resume releases the change again")
    func pauseAbortResume() throws {
        let (fixture, redis, sinkIDs) = try Self.fleet(30, options: FleetRolloutOptions(canaryPercent: 10, gateTimeout: 120, maxUnavailable: 5))
        try fixture.double.controller(["surge": true, "pod_start_seconds": 0.3])
        fixture.start()
        defer { fixture.stop() }
        try fixture.create(redis, sinkIDs)
        #expect(eventually(timeout: 120) { Self.allActive(fixture, sinkIDs) })

        // Slow pods: the canary is still rolling when the pause lands.
        try fixture.double.controller(["pod_start_seconds": 4])
        let newImage = "otel/opentelemetry-collector-contrib:0.92.0"
        #expect(fixture.manager.replaceTemplates(Self.template(image: newImage)) == 30)
        #expect(eventually(timeout: 30) { (Self.rollout(fixture)?.waves ?? 0) >= 1 })
        try fixture.reconciler.storage.requestFleetRollout(FleetRolloutRequest.pause.encoded)
        #expect(eventually(timeout: 30) { Self.rollout(fixture)?.phase == .paused })
        #expect(eventually(timeout: 60) { Self.rollout(fixture)?.count(.healthy) == 3 }, "\(Self.rollout(fixture)?.summary ?? "none")")
        #expect(RolloutTests.settled(fixture))
        let paused = try #require(Self.rollout(fixture))
        #expect(paused.waves == 1 && paused.pending.count == 27, "\(paused.summary)")
        let canary = Set(paused.reached.keys.map { CollectorNaming.name(forSinkID: $0) })
        #expect(try Self.images(fixture).filter { $0.value == newImage }.keys.sorted() == canary.sorted())

        // A pending collector's own config change is not held: it renders with the template in use.
        let own = try #require(paused.pending.first)
        try redis.hset(fixture.pipeline.names.configHash, field: own, value: "exporters: {otlphttp: {endpoint: https://changed.example}}\n")
        try fixture.manager.update(sinkID: own, ownerID: "o")
        #expect(try eventually(timeout: 60) { try Self.images(fixture)[CollectorNaming.name(forSinkID: own)] == newImage })

        try fixture.reconciler.storage.requestFleetRollout(FleetRolloutRequest.abort.encoded)
        #expect(eventually(timeout: 30) { Self.rollout(fixture)?.phase == .aborted })
        #expect(try eventually(timeout: 90) {
            try Self.images(fixture).filter { canary.contains($0.key) }.values.allSatisfy { $0 == Self.oldImage }
        }, "\((try? Self.images(fixture)) ?? [:])")
        #expect(Self.rollout(fixture)?.reached.values.allSatisfy(\.restored) == true)
        #expect(eventually(timeout: 60) { Self.allActive(fixture, sinkIDs) }, "restored collectors run, and say so")

        try fixture.double.controller(["pod_start_seconds": 0.3])
        try fixture.reconciler.storage.requestFleetRollout(FleetRolloutRequest.resume.encoded)
        #expect(eventually(timeout: 300) { Self.rollout(fixture).map { $0.phase == .completed && $0.change.contains("resumed") } == true },
                "\(Self.rollout(fixture)?.summary ?? "none")")
        #expect(try Self.images(fixture).values.allSatisfy { $0 == newImage })
    }

    @Test("a maestro restarted mid-rollout continues the same rollout from Redis: the waves it released stay released, the rest follows on resume")
    func restartContinues() throws {
        let options = FleetRolloutOptions(canaryPercent: 10, gateTimeout: 120, maxUnavailable: 4)
        let (fixture, redis, sinkIDs) = try Self.fleet(20, options: options)
        try fixture.double.controller(["surge": true, "pod_start_seconds": 0.3])
        fixture.start()
        try fixture.create(redis, sinkIDs)
        #expect(eventually(timeout: 120) { Self.allActive(fixture, sinkIDs) })
        let newImage = "otel/opentelemetry-collector-contrib:0.92.0"
        #expect(fixture.manager.replaceTemplates(Self.template(image: newImage)) == 20)
        #expect(eventually(timeout: 30) { (Self.rollout(fixture)?.waves ?? 0) >= 1 })
        try fixture.reconciler.storage.requestFleetRollout(FleetRolloutRequest.pause.encoded)
        #expect(eventually(timeout: 30) { Self.rollout(fixture)?.phase == .paused })
        #expect(eventually(timeout: 60) { Self.rollout(fixture)?.count(.rolling) == 0 }, "\(Self.rollout(fixture)?.summary ?? "none")")
        fixture.stop()
        let before = try #require(Self.rollout(fixture))

        // The next maestro starts with the new template (as a restarted process reads it from disk).
        let restarted = try WatchingFixture(double: fixture.double, pipeline: fixture.pipeline,
                                            options: ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: 1, rolloutTimeout: 600, fleet: options))
        restarted.reconciler.templates.replace(Self.template(image: newImage))
        restarted.start()
        defer { restarted.stop() }
        // Its resync re-renders every collector: those not released keep their desired state.
        try restarted.reconciler.resync()
        #expect(RolloutTests.settled(restarted))
        let held = try #require(Self.rollout(restarted))
        #expect(held.id == before.id && held.phase == .paused && held.pending.count == before.pending.count, "\(held.summary)")
        #expect(try Self.images(restarted).values.filter { $0 == newImage }.count == before.count(.healthy))

        try restarted.reconciler.storage.requestFleetRollout(FleetRolloutRequest.resume.encoded)
        #expect(eventually(timeout: 300) { Self.rollout(restarted)?.phase == .completed }, "\(Self.rollout(restarted)?.summary ?? "none")")
        let done = try #require(Self.rollout(restarted))
        #expect(done.id == before.id && done.waves > before.waves && done.count(.healthy) == 20, "\(done.summary)")
        #expect(try Self.images(restarted).values.allSatisfy { $0 == newImage })
    }
}
