internal import Synchronization

/// The image the collector template runs, as the sinker checks component types against it: replaced
/// when the templates reload, so that a template moved to another image is checked against that
/// image's list from the next event on.
public final class CollectorImageSource: Sendable {
    private let image: Mutex<String?>

    public init(_ image: String?) { self.image = Mutex(image) }

    public var current: String? { image.withLock { $0 } }

    public func replace(_ newImage: String?) { image.withLock { $0 = newImage } }
}
