import MaestroFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    FuzzTargets.yaml(Array(UnsafeRawBufferPointer(start: start, count: count)))
    return 0
}
