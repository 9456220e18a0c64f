import ArgumentParser
import Foundation
import MaestroCommandLine
import MaestroCore
import MaestroRedis
import MaestroRoles

struct RolloutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Where a fleet rollout stands (a template reload, a maestro that renders differently), and pause, resume or abort it.",
        discussion: """
        A fleet change reaches a canary share of the collectors first (--rollout-canary), waits for them to \
        reach active (--rollout-gate-timeout), then growing waves of at most --rollout-max-unavailable; it \
        halts by itself past --rollout-max-failures. The running maestro's leader acts on pause, resume and \
        abort within a second (it reads them from Redis).
        """,
        subcommands: [RolloutStatusCommand.self, RolloutPauseCommand.self, RolloutResumeCommand.self, RolloutAbortCommand.self]
    )
}

struct RolloutStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "The fleet rollout under way or the last one: its change, waves, reached, healthy, failed, pending, and why it halted.")

    @OptionGroup var settings: SettingsOptions

    func run() throws {
        try exitingOnInvalidInput {
            let (rollout, _) = try RolloutRequest.read(settings)
            print(rollout.summary)
        }
    }
}

struct RolloutPauseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Release no new wave; the collectors rolling now finish.")
    @OptionGroup var settings: SettingsOptions
    func run() throws { try exitingOnInvalidInput { try RolloutRequest.send(.pause, settings) } }
}

struct RolloutResumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Continue a paused or halted rollout; an aborted one starts again from its canary.")
    @OptionGroup var settings: SettingsOptions
    func run() throws { try exitingOnInvalidInput { try RolloutRequest.send(.resume, settings) } }
}

struct RolloutAbortCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abort",
        abstract: "Stop the rollout and return the collectors it reached to their previous desired state; the change stays held until the next one (or resume).")
    @OptionGroup var settings: SettingsOptions
    func run() throws { try exitingOnInvalidInput { try RolloutRequest.send(.abort, settings) } }
}

enum RolloutRequest {
    static func read(_ settings: SettingsOptions) throws -> (FleetRolloutState, RedisCollectorStorage) {
        let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
        let wiring = Wiring(configuration: configuration)
        let storage = RedisCollectorStorage(redisURL: try wiring.redisURL(), names: wiring.names)
        guard let rollout = FleetRolloutState(json: try storage.fleetRollout()) else {
            throw InvalidInput("no fleet rollout has run (\(wiring.names.fleetRollout) is empty)")
        }
        return (rollout, storage)
    }

    static func send(_ request: FleetRolloutRequest, _ settings: SettingsOptions) throws {
        let (rollout, storage) = try read(settings)
        let allowed: Bool
        switch request {
        case .pause: allowed = rollout.phase == .running
        case .resume: allowed = rollout.phase == .paused || rollout.phase == .halted || rollout.phase == .aborted
        default: allowed = rollout.isActive
        }
        guard allowed else { throw InvalidInput("rollout \(rollout.id) is \(rollout.phase.rawValue): nothing to \(request.encoded)") }
        try storage.requestFleetRollout(request.encoded)
        print("asked the maestro leader to \(request.encoded) rollout \(rollout.id) (it is \(rollout.phase.rawValue)); maestro rollout status shows when it did")
    }
}
