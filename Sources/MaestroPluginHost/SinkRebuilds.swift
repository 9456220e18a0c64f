public import MaestroCore

extension SinkRebuilder {
    /// The rebuilder with the backend plugins of `context` (the newest generation, when hot-reloaded).
    public convenience init(context: SinkerContext) {
        self.init(settings: SinkerSettings(names: context.names, policy: context.policy, collectors: context.collectors,
                                           streamMaxLength: context.streamMaxLength, logger: context.logger),
                  configSource: PluginConfigSource(context: context))
    }
}
