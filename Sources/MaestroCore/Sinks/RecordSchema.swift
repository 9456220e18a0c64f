/// The schema version every JSON record maestro keeps in Redis carries (sink records, collector
/// records) and every dead letter, in the field `schema_version`. Records without it were written by
/// maestro before records were versioned and read as they always did. A change of format adds fields
/// and raises the version; readers ignore fields they do not know, so two maestro versions can run side
/// by side during a rolling upgrade, each reading what the other wrote.
///
/// - 1: the first versioned records.
/// - 2: collector records carry `intent` (`run`, `idle`, `stop`: what the triggers asked of the
///   collector; the reconcile acts on it). A collector record without one reads as before intents: a
///   desired state means the collector runs. A sink record may carry `created: false` (written only for
///   a sink whose create was rejected as invalid, so that its next update acts as a create); a reader
///   that does not know the field reads the record as it did before, so the version stays. Likewise a
///   live sink record may carry `input` (the sink config the stored collector config was built from)
///   and `plugin_fingerprint` (of the plugin that built it): a reader that does not know them ignores
///   them, and a record an older writer stored without them reads as "no input kept" (the sink is
///   rebuilt at its next event, not by a plugin change), so the version stays.
public enum RecordSchema {
    public static let field = "schema_version"
    public static let version: Int64 = 2
}
