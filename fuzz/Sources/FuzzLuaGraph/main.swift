import MaestroFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    FuzzTargets.luaGraph(Array(UnsafeRawBufferPointer(start: start, count: count)))
    return 0
}
