import ArgumentParser
import Foundation
import GRPCCore
import MaestroAPI
import MaestroCommandLine
import MaestroCore
import MaestroRoles

/// `maestro collectors …`: a gRPC client of a running maestro (TCP or Unix socket).
struct CollectorsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collectors",
        abstract: "Manage collectors through a running maestro's gRPC API.",
        subcommands: [Create.self, Update.self, Delete.self, Get.self, List.self, Render.self, Watch.self]
    )

    struct Connection: ParsableArguments {
        @OptionGroup var settings: SettingsOptions
        @Option(name: .customLong("target"), help: "HOST:PORT or unix:PATH of the maestro API (default: --maestro-target).")
        var target: String?

        func client() throws -> APIClient {
            let wiring = Wiring(configuration: try settings.resolve(environment: ProcessInfo.processInfo.environment))
            guard let target = target ?? wiring.settings.maestroTarget else {
                throw InvalidInput("give --target HOST:PORT or unix:PATH")
            }
            do {
                return try APIClient(configuration: wiring.apiClientConfiguration(target: target))
            } catch {
                throw InvalidInput("\(error)")
            }
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Deploy a sink's collector from its stored config.")
        @OptionGroup var connection: Connection
        @Option(name: .customLong("sink-id")) var sinkID: String
        @Option(name: .customLong("owner")) var owner: String = ""
        func run() throws {
            try call(connection) { client in
                printCollector(try await client.collectors.createOtelCollector(.with { $0.sinkID = sinkID; $0.ownerID = owner },
                                                                                metadata: client.metadata, options: client.options))
            }
        }
    }

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "update", abstract: "Re-render and re-apply a sink's collector.")
        @OptionGroup var connection: Connection
        @Option(name: .customLong("sink-id")) var sinkID: String
        @Option(name: .customLong("owner")) var owner: String = ""
        func run() throws {
            try call(connection) { client in
                printCollector(try await client.collectors.updateOtelCollector(.with { $0.sinkID = sinkID; $0.ownerID = owner },
                                                                                metadata: client.metadata, options: client.options))
            }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "delete", abstract: "Remove a sink's collector (its config stays).")
        @OptionGroup var connection: Connection
        @Option(name: .customLong("sink-id")) var sinkID: String
        func run() throws {
            try call(connection) { client in
                let response = try await client.collectors.deleteOtelCollector(.with { $0.sinkID = sinkID }, metadata: client.metadata,
                                                                                options: client.options)
                print(response.existed ? "deleted the collector of \(sinkID)" : "\(sinkID) had no collector")
            }
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "get", abstract: "Show one collector.")
        @OptionGroup var connection: Connection
        @Option(name: .customLong("sink-id")) var sinkID: String
        func run() throws {
            try call(connection) { client in
                printCollector(try await client.collectors.getOtelCollector(.with { $0.sinkID = sinkID }, metadata: client.metadata,
                                                                             options: client.options))
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "A table of collectors.")
        @OptionGroup var connection: Connection
        @Option(name: .customLong("owner")) var owner: String = ""
        @Option(name: .customLong("status")) var status: String = ""
        func run() throws {
            try call(connection) { client in
                var rows: [[String]] = []
                var token = ""
                repeat {
                    let page = try await client.collectors.listOtelCollectors(.with {
                        $0.ownerID = owner
                        $0.status = status
                        $0.pageToken = token
                    }, metadata: client.metadata, options: client.options)
                    rows += page.collectors.map { [$0.sinkID, $0.ownerID, $0.collectorName, $0.namespace, $0.status, $0.statusChangedAt] }
                    token = page.nextPageToken
                } while !token.isEmpty
                print(formatTable(["SINK", "OWNER", "COLLECTOR", "NAMESPACE", "STATUS", "CHANGED"], rows))
            }
        }
    }

    struct Render: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "render", abstract: "Dry run: the config, the objects (YAML) and their diffs.")
        @OptionGroup var connection: Connection
        @Option(name: .customLong("sink-id")) var sinkID: String
        @Flag(name: .customLong("reveal-secrets"), help: "Show credentials (only for an authenticated caller).") var reveal: Bool = false
        func run() throws {
            try call(connection) { client in
                let response = try await client.collectors.renderOtelCollector(.with { $0.sinkID = sinkID; $0.revealSecrets = reveal },
                                                                                metadata: client.metadata, options: client.options)
                print("# collector config\(response.secretsRevealed ? "" : " (credentials redacted)")")
                print(response.configYaml, terminator: "")
                print("---\n# objects")
                print(response.objectsYaml, terminator: "")
                print("# diff against the stored desired state: \(response.diffStored.isEmpty ? "none" : "\n" + response.diffStored)")
                print("# diff against the live objects: \(response.diffLive.isEmpty ? "none" : "\n" + response.diffLive)")
            }
        }
    }

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "watch", abstract: "Print status changes as they happen (Ctrl-C stops).")
        @OptionGroup var connection: Connection
        @Option(name: .customLong("sink-id"), help: "Only this sink.") var sinkID: String = ""
        func run() throws {
            try call(connection) { client in
                try await client.collectors.watchOtelCollectors(.with { $0.sinkID = sinkID }, metadata: client.metadata,
                                                                options: .defaults) { response in
                    for try await event in response.messages {
                        let collector = event.collector
                        print("\(collector.statusChangedAt)  \(collector.sinkID)  \(collector.status)\(collector.errorMessage.isEmpty ? "" : "  " + collector.errorMessage)")
                        fflush(nil)
                    }
                }
            }
        }
    }
}

private func printCollector(_ collector: Maestro_V1_OtelCollector) {
    print(formatTable(["FIELD", "VALUE"], [
        ["sink_id", collector.sinkID], ["owner_id", collector.ownerID], ["status", collector.status], ["error_message", collector.errorMessage],
        ["collector_name", collector.collectorName], ["namespace", collector.namespace], ["config_hash", collector.configHash],
        ["deployed_at", collector.deployedAt], ["status_changed_at", collector.statusChangedAt],
    ]))
}

/// Runs a client call; an RPC error prints its status and exits 1 (2 for INVALID_ARGUMENT).
private func call(_ connection: CollectorsCommand.Connection, _ body: @escaping @Sendable (APIClient) async throws -> Void) throws {
    let client: APIClient
    do {
        client = try connection.client()
    } catch let error as InvalidInput {
        printError("maestro: \(error.description)")
        throw ExitCode(2)
    }
    do {
        try awaitBlocking {
            defer { Task { await client.close() } }
            try await body(client)
        }
    } catch let error as RPCError {
        printError("maestro: \(error.code): \(error.message)")
        throw ExitCode(error.code == .invalidArgument ? 2 : 1)
    }
}
