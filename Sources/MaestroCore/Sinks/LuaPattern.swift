/// Why a schema `pattern` cannot be used or could not decide.
public struct LuaPatternError: Error, CustomStringConvertible, Equatable {
    public let message: String
    /// The match took more steps than it may: the value is refused, the pattern is not wrong.
    public let exhausted: Bool
    public var description: String { message }
}

/// A Lua 5.4 pattern (the language of `string.find`), matched by Swift with a bound on its work.
///
/// Schema `pattern` rules are checked by the host, outside any Lua VM, so they need their own bound:
/// Lua's matcher backtracks, and `(.-)(.-)(.-)x` against a long value would take hours. Every step of
/// the matcher is counted and the match gives up past `stepLimit`, which refuses the value. Written
/// for maestro from the Lua 5.4 manual (§6.4.1) with the semantics of its reference matcher: classes
/// in the C locale, sets, `*`, `+`, `-`, `?`, anchors, captures, back-references, `%b` and `%f`.
public struct LuaPattern: Sendable, Equatable {
    public let source: String
    private let pattern: [UInt8]

    /// Steps a match may take by default: about a millisecond of work.
    public static let defaultStepLimit = 200_000
    /// Nesting of the matcher (captures, `?`, quantifiers), as Lua's MAXCCALLS.
    static let maximumDepth = 200

    /// Checks the pattern's syntax, so that a schema with a malformed pattern fails when it loads.
    public init(_ source: String) throws(LuaPatternError) {
        self.source = source
        pattern = Array(source.utf8)
        try checkSyntax()
    }

    /// Whether the pattern matches somewhere in `subject` (anchor it with `^` and `$` for the whole
    /// value).
    public func matches(_ subject: String, stepLimit: Int = LuaPattern.defaultStepLimit) throws(LuaPatternError) -> Bool {
        var state = MatchState(subject: Array(subject.utf8), pattern: pattern, stepsLeft: stepLimit)
        let anchored = pattern.first == UInt8(ascii: "^")
        var start = 0
        repeat {
            state.level = 0
            state.depthLeft = Self.maximumDepth
            if try state.match(start, anchored ? 1 : 0) != nil { return true }
            start += 1
        } while start <= state.subject.count && !anchored
        return false
    }

    private func checkSyntax() throws(LuaPatternError) {
        func fail(_ problem: String) -> LuaPatternError { LuaPatternError(message: "malformed pattern (\(problem))", exhausted: false) }
        var index = pattern.first == UInt8(ascii: "^") ? 1 : 0
        var open: [Int] = []
        var closed = 0
        let escape = UInt8(ascii: "%")
        while index < pattern.count {
            let byte = pattern[index]
            switch byte {
            case UInt8(ascii: "("):
                open.append(index)
                index += 1
            case UInt8(ascii: ")"):
                guard open.popLast() != nil else { throw LuaPatternError(message: "invalid pattern capture (unmatched ')')", exhausted: false) }
                closed += 1
                index += 1
            case escape:
                guard index + 1 < pattern.count else { throw fail("ends with '%'") }
                let next = pattern[index + 1]
                if next == UInt8(ascii: "b") {
                    guard index + 3 < pattern.count else { throw fail("missing arguments to '%b'") }
                    index += 4
                } else if next == UInt8(ascii: "f") {
                    guard index + 2 < pattern.count, pattern[index + 2] == UInt8(ascii: "[") else { throw fail("missing '[' after '%f' in pattern") }
                    index = try classEnd(index + 2)
                } else if next >= UInt8(ascii: "1") && next <= UInt8(ascii: "9") {
                    // A back-reference names a capture that is already closed.
                    guard Int(next - UInt8(ascii: "0")) <= closed else {
                        throw LuaPatternError(message: "invalid capture index %\(Character(Unicode.Scalar(next)))", exhausted: false)
                    }
                    index += 2
                } else {
                    index += 2
                }
                if index < pattern.count, [UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "?")].contains(pattern[index]),
                   next != UInt8(ascii: "b"), next != UInt8(ascii: "f"), !(next >= UInt8(ascii: "1") && next <= UInt8(ascii: "9")) {
                    index += 1
                }
            case UInt8(ascii: "["):
                index = try classEnd(index)
                if index < pattern.count, [UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "?")].contains(pattern[index]) { index += 1 }
            default:
                index += 1
            }
        }
        if !open.isEmpty { throw fail("unfinished capture") }
    }

    /// The index after the single-character class starting at `index` (`x`, `%a`, `[set]`).
    private func classEnd(_ start: Int) throws(LuaPatternError) -> Int {
        var index = start
        let byte = pattern[index]
        index += 1
        if byte == UInt8(ascii: "%") {
            guard index < pattern.count else { throw LuaPatternError(message: "malformed pattern (ends with '%')", exhausted: false) }
            return index + 1
        }
        if byte == UInt8(ascii: "[") {
            if index < pattern.count && pattern[index] == UInt8(ascii: "^") { index += 1 }
            repeat {
                guard index < pattern.count else { throw LuaPatternError(message: "malformed pattern (missing ']')", exhausted: false) }
                let current = pattern[index]
                index += 1
                if current == UInt8(ascii: "%") && index < pattern.count { index += 1 }
            } while index >= pattern.count || pattern[index] != UInt8(ascii: "]")
            return index + 1
        }
        return index
    }
}

/// One match attempt: the reference matcher's state, plus the step count.
private struct MatchState {
    let subject: [UInt8]
    let pattern: [UInt8]
    var stepsLeft: Int
    var level = 0
    var depthLeft = LuaPattern.maximumDepth
    /// Start and length of each capture; length -1 while unfinished, -2 for a position capture.
    var captures: [(start: Int, length: Int)] = Array(repeating: (0, 0), count: 32)

    static let unfinished = -1
    static let position = -2

    mutating func step() throws(LuaPatternError) {
        stepsLeft -= 1
        if stepsLeft < 0 {
            throw LuaPatternError(message: "the value took too long to check against the pattern", exhausted: true)
        }
    }

    func classEnd(_ start: Int) -> Int {
        var index = start
        let byte = pattern[index]
        index += 1
        if byte == UInt8(ascii: "%") { return index + 1 }
        if byte == UInt8(ascii: "[") {
            if pattern[index] == UInt8(ascii: "^") { index += 1 }
            repeat {
                let current = pattern[index]
                index += 1
                if current == UInt8(ascii: "%") { index += 1 }
            } while pattern[index] != UInt8(ascii: "]")
            return index + 1
        }
        return index
    }

    static func matchesClass(_ byte: UInt8, _ classByte: UInt8) -> Bool {
        let c = Character(Unicode.Scalar(byte))
        let isASCII = byte < 128
        let result: Bool
        switch Character(Unicode.Scalar(classByte)).lowercased() {
        case "a": result = isASCII && c.isLetter
        case "c": result = byte < 32 || byte == 127
        case "d": result = byte >= 48 && byte <= 57
        case "g": result = byte > 32 && byte < 127
        case "l": result = byte >= 97 && byte <= 122
        case "p": result = byte > 32 && byte < 127 && !(isASCII && (c.isLetter || c.isNumber))
        case "s": result = byte == 32 || (byte >= 9 && byte <= 13)
        case "u": result = byte >= 65 && byte <= 90
        case "w": result = isASCII && (c.isLetter || c.isNumber)
        case "x": result = (byte >= 48 && byte <= 57) || (byte >= 65 && byte <= 70) || (byte >= 97 && byte <= 102)
        default: return classByte == byte
        }
        let isUpperClass = classByte >= 65 && classByte <= 90
        return isUpperClass ? !result : result
    }

    /// `[set]` from `start` (at '[') to `end` (at ']').
    func matchesSet(_ byte: UInt8, _ start: Int, _ end: Int) -> Bool {
        var index = start + 1
        var wanted = true
        if pattern[index] == UInt8(ascii: "^") {
            wanted = false
            index += 1
        }
        while index < end {
            if pattern[index] == UInt8(ascii: "%") {
                index += 1
                if Self.matchesClass(byte, pattern[index]) { return wanted }
                index += 1
            } else if pattern[index + 1] == UInt8(ascii: "-") && index + 2 < end {
                if pattern[index] <= byte && byte <= pattern[index + 2] { return wanted }
                index += 3
            } else {
                if pattern[index] == byte { return wanted }
                index += 1
            }
        }
        return !wanted
    }

    func singleMatch(_ s: Int, _ p: Int, _ ep: Int) -> Bool {
        guard s < subject.count else { return false }
        let byte = subject[s]
        switch pattern[p] {
        case UInt8(ascii: "."): return true
        case UInt8(ascii: "%"): return Self.matchesClass(byte, pattern[p + 1])
        case UInt8(ascii: "["): return matchesSet(byte, p, ep - 1)
        default: return pattern[p] == byte
        }
    }

    /// The end of the match of `pattern[p...]` at `subject[s...]`, or nil.
    mutating func match(_ start: Int, _ patternStart: Int) throws(LuaPatternError) -> Int? {
        depthLeft -= 1
        guard depthLeft > 0 else { throw LuaPatternError(message: "pattern too complex", exhausted: true) }
        defer { depthLeft += 1 }
        var s = start
        var p = patternStart
        while true {
            try step()
            guard p < pattern.count else { return s }
            switch pattern[p] {
            case UInt8(ascii: "("):
                if p + 1 < pattern.count && pattern[p + 1] == UInt8(ascii: ")") {
                    return try startCapture(s, p + 2, Self.position)
                }
                return try startCapture(s, p + 1, Self.unfinished)
            case UInt8(ascii: ")"):
                return try endCapture(s, p + 1)
            case UInt8(ascii: "$") where p + 1 == pattern.count:
                return s == subject.count ? s : nil
            case UInt8(ascii: "%") where pattern[p + 1] == UInt8(ascii: "b"):
                guard let end = try matchBalance(s, p + 2) else { return nil }
                s = end
                p += 4
                continue
            case UInt8(ascii: "%") where pattern[p + 1] == UInt8(ascii: "f"):
                p += 2
                let ep = classEnd(p)
                let previous: UInt8 = s == 0 ? 0 : subject[s - 1]
                let current: UInt8 = s < subject.count ? subject[s] : 0
                guard !matchesSet(previous, p, ep - 1) && matchesSet(current, p, ep - 1) else { return nil }
                p = ep
                continue
            case UInt8(ascii: "%") where pattern[p + 1] >= UInt8(ascii: "0") && pattern[p + 1] <= UInt8(ascii: "9"):
                guard let end = try matchCapture(s, Int(pattern[p + 1] - UInt8(ascii: "1"))) else { return nil }
                s = end
                p += 2
                continue
            default:
                break
            }
            let ep = classEnd(p)
            let quantifier: UInt8 = ep < pattern.count ? pattern[ep] : 0
            if !singleMatch(s, p, ep) {
                if quantifier == UInt8(ascii: "*") || quantifier == UInt8(ascii: "?") || quantifier == UInt8(ascii: "-") {
                    p = ep + 1
                    continue
                }
                return nil
            }
            switch quantifier {
            case UInt8(ascii: "?"):
                if let end = try match(s + 1, ep + 1) { return end }
                p = ep + 1
            case UInt8(ascii: "+"):
                return try maxExpand(s + 1, p, ep)
            case UInt8(ascii: "*"):
                return try maxExpand(s, p, ep)
            case UInt8(ascii: "-"):
                return try minExpand(s, p, ep)
            default:
                s += 1
                p = ep
            }
        }
    }

    mutating func maxExpand(_ s: Int, _ p: Int, _ ep: Int) throws(LuaPatternError) -> Int? {
        var count = 0
        while singleMatch(s + count, p, ep) {
            try step()
            count += 1
        }
        while count >= 0 {
            if let end = try match(s + count, ep + 1) { return end }
            count -= 1
        }
        return nil
    }

    mutating func minExpand(_ start: Int, _ p: Int, _ ep: Int) throws(LuaPatternError) -> Int? {
        var s = start
        while true {
            if let end = try match(s, ep + 1) { return end }
            guard singleMatch(s, p, ep) else { return nil }
            s += 1
        }
    }

    mutating func startCapture(_ s: Int, _ p: Int, _ kind: Int) throws(LuaPatternError) -> Int? {
        guard level < captures.count else { throw LuaPatternError(message: "too many captures", exhausted: false) }
        captures[level] = (s, kind)
        level += 1
        let end = try match(s, p)
        if end == nil { level -= 1 }
        return end
    }

    mutating func endCapture(_ s: Int, _ p: Int) throws(LuaPatternError) -> Int? {
        var open = level - 1
        while open >= 0 && captures[open].length != Self.unfinished { open -= 1 }
        guard open >= 0 else { throw LuaPatternError(message: "invalid pattern capture", exhausted: false) }
        captures[open].length = s - captures[open].start
        let end = try match(s, p)
        if end == nil { captures[open].length = Self.unfinished }
        return end
    }

    mutating func matchBalance(_ start: Int, _ p: Int) throws(LuaPatternError) -> Int? {
        guard start < subject.count, subject[start] == pattern[p] else { return nil }
        let open = pattern[p], close = pattern[p + 1]
        var depth = 1
        var s = start + 1
        while s < subject.count {
            try step()
            if subject[s] == close {
                depth -= 1
                if depth == 0 { return s + 1 }
            } else if subject[s] == open {
                depth += 1
            }
            s += 1
        }
        return nil
    }

    mutating func matchCapture(_ s: Int, _ index: Int) throws(LuaPatternError) -> Int? {
        guard index >= 0, index < level, captures[index].length != Self.unfinished else {
            throw LuaPatternError(message: "invalid capture index %\(index + 1)", exhausted: false)
        }
        // A position capture has no text: as in Lua, it never matches as a back-reference.
        let (start, length) = captures[index]
        guard length >= 0, subject.count - s >= length else { return nil }
        for offset in 0..<length {
            try step()
            if subject[start + offset] != subject[s + offset] { return nil }
        }
        return s + length
    }
}
