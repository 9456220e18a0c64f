import Foundation
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroCore

@Suite("Reloaded component lists", .timeLimit(.minutes(2)))
struct ComponentListReloadTests {
    @Test("new component lists re-check the stored configs: a config refused for an unknown type is deployed once a list has the type")
    func componentListsRequeue() throws {
        final class ImageRenderer: CollectorRenderer, Sendable {
            func render(_ inputs: CollectorInputs) throws -> RenderedCollector {
                let deployment: Value = ["apiVersion": "apps/v1", "kind": "Deployment", "metadata": ["name": .string(inputs.collectorName), "namespace": "otel"],
                                         "spec": ["template": ["spec": ["containers": [["name": "c", "image": "collector:1"]]]]],
                                         "data": .string(inputs.configYAML)]
                return RenderedCollector(name: inputs.collectorName, ownerID: inputs.ownerID, namespace: "otel", objects: [deployment],
                                         yaml: try JSON.encode(deployment))
            }
        }
        let fixture = try CollectorServiceFixture()
        fixture.reconciler.templates.replace { ImageRenderer() }
        let config = "receivers: {brand_new: {}}\nexporters: {debug: {}}\nservice: {pipelines: {metrics: {receivers: [brand_new], exporters: [debug]}}}\n"
        func lists(receivers: Set<String>) -> CollectorComponentLists {
            CollectorComponentLists([CollectorComponents(images: ["collector:1"], file: "c.yaml", types: [.receivers: receivers, .exporters: ["debug"]])])
        }
        fixture.reconciler.useComponentLists(lists(receivers: ["otlp"]))
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        fixture.sink("s1", config: config)
        try fixture.manager.create(sinkID: "s1", ownerID: "o1")
        #expect(eventually { fixture.contents.collectors["s1"]?["status"] == "provisioning_error" })
        #expect(fixture.settled() && fixture.manifest("s1") == nil)
        fixture.reconciler.useComponentLists(lists(receivers: ["otlp", "brand_new"]))
        #expect(eventually { fixture.manifest("s1") != nil }, "the refused config is checked again with the new lists")
        #expect(eventually { fixture.contents.collectors["s1"]?["status"] == "provisioning" })
    }
}
