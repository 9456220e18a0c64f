internal import CLua
internal import MaestroValue

/// Light userdata that stands for `maestro.null`: one address for the whole process.
nonisolated(unsafe) let luaNullSentinel = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)

/// Registry key under which the metatable marking `maestro.empty_map()` tables is kept.
let emptyMapMetatableKey = "maestro.empty_map"

/// Deeper values are refused: they are either absurd or a cycle.
let maximumConversionDepth = 200

/// Converts between Lua stack slots and `Value`. Only raw accesses, so no metamethod (plugin code)
/// runs while Swift is on the stack. The caller makes sure the memory cap is lifted (host allowance);
/// conversions check the cap themselves instead, and count nodes (`ValueLimits`), so neither a large
/// value from the host nor a Lua graph of shared sub-tables can take more than the VM may hold.
struct LuaStack {
    let state: OpaquePointer

    var top: Int32 { lua_gettop(state) }

    /// The limits of a conversion in this VM: its memory cap in bytes, nodes as `ValueLimits` says.
    var limits: ValueLimits { ValueLimits.memoryCap(Int(maestro_lua_memory_cap(state))) }

    /// Pushes a value. A value the VM cannot hold under its memory cap is refused part way, its pushed
    /// part left as garbage: `memoryCap` error. Returns the nodes pushed, which the host charges.
    @discardableResult
    func push(_ value: Value) throws(LuaError) -> Int {
        var nodes = 0
        try push(value, depth: 0, nodes: &nodes)
        return nodes
    }

    /// Whether `bytes` more fit under the memory cap; collects garbage once before saying no.
    private func fits(_ bytes: Int) -> Bool {
        if maestro_lua_memory_left(state) >= bytes { return true }
        maestro_lua_gc_collect(state)
        return maestro_lua_memory_left(state) >= bytes
    }

    private func push(_ value: Value, depth: Int, nodes: inout Int) throws(LuaError) {
        guard depth < maximumConversionDepth else {
            throw LuaError(kind: .conversion, message: "value nested deeper than \(maximumConversionDepth) levels")
        }
        guard lua_checkstack(state, 4) != 0 else {
            throw LuaError(kind: .conversion, message: "Lua stack overflow while converting a value")
        }
        nodes += 1
        // Lua's own sizes, at least: a table header (56 bytes) and a slot (16) per list item or a node
        // (24) per map entry; a string's header (24) and bytes. Checked per collection and long string.
        switch value {
        case .string(let text) where text.utf8.count > 40:
            guard fits(text.utf8.count + 25) else { throw outOfMemory() }
        case .list(let items):
            guard fits(56 + 16 * items.count) else { throw outOfMemory() }
        case .map(let entries):
            guard fits(56 + 24 * entries.count) else { throw outOfMemory() }
        default:
            break
        }
        switch value {
        case .null: lua_pushlightuserdata(state, luaNullSentinel)
        case .bool(let flag): lua_pushboolean(state, flag ? 1 : 0)
        case .int(let number): lua_pushinteger(state, number)
        case .double(let number): lua_pushnumber(state, number)
        case .string(let text): pushString(text)
        case .list(let items):
            lua_createtable(state, Int32(clamping: items.count), 0)
            for (index, item) in items.enumerated() {
                try push(item, depth: depth + 1, nodes: &nodes)
                lua_rawseti(state, -2, Int64(index + 1))
            }
        case .map(let entries):
            lua_createtable(state, 0, Int32(clamping: entries.count))
            for (key, item) in entries {
                pushString(key)
                try push(item, depth: depth + 1, nodes: &nodes)
                lua_rawset(state, -3)
            }
            if entries.isEmpty {
                _ = lua_getfield(state, maestro_lua_registry_index(), emptyMapMetatableKey)
                _ = lua_setmetatable(state, -2)
            }
        }
    }

    private func outOfMemory() -> LuaError {
        LuaError(kind: .memoryCap, message: "a value from the host does not fit the memory cap of \(maestro_lua_memory_cap(state)) bytes")
    }

    func pushString(_ text: String) {
        var copy = text
        copy.withUTF8 { buffer in
            guard let base = buffer.baseAddress, !buffer.isEmpty else {
                _ = lua_pushlstring(state, "", 0)
                return
            }
            _ = lua_pushlstring(state, UnsafeRawPointer(base).assumingMemoryBound(to: CChar.self), buffer.count)
        }
    }

    /// The value at `index`; `path` names it in errors (e.g. `argument #1`, `return value`). `budget`
    /// counts nodes and bytes across the values of one conversion (all arguments of a call, say).
    func value(at index: Int32, path: String, budget: inout ValueBudget) throws(LuaError) -> Value {
        try value(at: lua_absindex(state, index), path: { path }, depth: 0, budget: &budget)
    }

    /// Like `value(at:path:budget:)`, but Lua `nil` is Swift `nil` rather than `.null`.
    func optionalValue(at index: Int32, path: String, budget: inout ValueBudget) throws(LuaError) -> Value? {
        lua_type(state, index) == LUA_TNIL || lua_type(state, index) == LUA_TNONE ? nil : try value(at: index, path: path, budget: &budget)
    }

    /// One value with a budget of its own (this VM's `limits`).
    func value(at index: Int32, path: String) throws(LuaError) -> Value {
        var budget = ValueBudget(limits)
        return try value(at: index, path: path, budget: &budget)
    }

    private func tooLarge(_ path: () -> String, _ exceeded: String) -> LuaError {
        LuaError(kind: .conversion, message: "\(path()): value too large to convert: \(exceeded) (shared sub-tables count every time they are reached; the limit follows the memory cap)")
    }

    func string(at index: Int32) -> String? {
        guard lua_type(state, index) == LUA_TSTRING else { return nil }
        var length = 0
        guard let pointer = maestro_lua_tolstring(state, index, &length) else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    // The path is built only for an error message: building it for every key cost as much as the conversion.
    private func value(at index: Int32, path: () -> String, depth: Int, budget: inout ValueBudget) throws(LuaError) -> Value {
        let type = lua_type(state, index)
        if type == LUA_TSTRING {
            let text = string(at: index) ?? ""
            if let exceeded = budget.charge(stringBytes: text.utf8.count) { throw tooLarge(path, exceeded) }
            return .string(text)
        }
        if let exceeded = budget.charge() { throw tooLarge(path, exceeded) }
        switch type {
        case LUA_TNIL, LUA_TNONE:
            return .null
        case LUA_TBOOLEAN:
            return .bool(lua_toboolean(state, index) != 0)
        case LUA_TNUMBER:
            if lua_isinteger(state, index) != 0 { return .int(maestro_lua_tointeger(state, index)) }
            return .double(maestro_lua_tonumber(state, index))
        case LUA_TLIGHTUSERDATA where lua_touserdata(state, index) == luaNullSentinel:
            return .null
        case LUA_TTABLE:
            return try table(at: index, path: path, depth: depth, budget: &budget)
        default:
            let typeName = String(cString: lua_typename(state, lua_type(state, index)))
            throw LuaError(kind: .conversion, message: "\(path()): a \(typeName) cannot be converted to data")
        }
    }

    private func table(at index: Int32, path: () -> String, depth: Int, budget: inout ValueBudget) throws(LuaError) -> Value {
        guard depth < maximumConversionDepth else {
            throw LuaError(kind: .conversion, message: "\(path()): nested deeper than \(maximumConversionDepth) levels (or a cycle)")
        }
        guard lua_checkstack(state, 6) != 0 else {
            throw LuaError(kind: .conversion, message: "\(path()): Lua stack overflow while converting")
        }
        let markedAsMap = hasEmptyMapMetatable(at: index)
        // Pairs first, the dictionary once at its final size: growing it key by key rehashed every key.
        var pairs: [(String, Value)] = []
        var integerKeys = 0
        var largestKey: Int64 = 0
        var smallestKey: Int64 = .max
        lua_pushnil(state)
        while lua_next(state, index) != 0 {
            switch lua_type(state, -2) {
            case LUA_TSTRING:
                let key = string(at: -2) ?? ""
                do throws(LuaError) {
                    if let exceeded = budget.charge(nodes: 0, stringBytes: key.utf8.count) { throw tooLarge(path, exceeded) }
                    pairs.append((key, try value(at: lua_absindex(state, -1), path: { path() + "." + key }, depth: depth + 1, budget: &budget)))
                } catch {
                    maestro_lua_pop(state, 2)
                    throw error
                }
            case LUA_TNUMBER where lua_isinteger(state, -2) != 0:
                let key = maestro_lua_tointeger(state, -2)
                integerKeys += 1
                largestKey = max(largestKey, key)
                smallestKey = min(smallestKey, key)
            default:
                let typeName = String(cString: lua_typename(state, lua_type(state, -2)))
                maestro_lua_pop(state, 2)
                throw LuaError(kind: .conversion, message: "\(path()): a table key must be a string or a list index, not a \(typeName)")
            }
            maestro_lua_pop(state, 1)
        }
        if integerKeys > 0 && !pairs.isEmpty {
            throw LuaError(kind: .conversion, message: "\(path()): a table mixes list items and map keys")
        }
        if integerKeys == 0 {
            if pairs.isEmpty && !markedAsMap { return .list([]) }
            var entries: [String: Value] = Dictionary(minimumCapacity: pairs.count)
            for (key, value) in pairs { entries[key] = value }
            return .map(entries)
        }
        if markedAsMap {
            throw LuaError(kind: .conversion, message: "\(path()): a table marked with maestro.empty_map() holds list items")
        }
        guard smallestKey == 1, largestKey == Int64(integerKeys) else {
            throw LuaError(kind: .conversion, message: "\(path()): a list must have items 1..n without holes (sparse table)")
        }
        var items: [Value] = []
        items.reserveCapacity(integerKeys)
        for position in 1...largestKey {
            _ = lua_rawgeti(state, index, position)
            do {
                items.append(try value(at: lua_absindex(state, -1), path: { "\(path())[\(position)]" }, depth: depth + 1, budget: &budget))
            } catch {
                maestro_lua_pop(state, 1)
                throw error
            }
            maestro_lua_pop(state, 1)
        }
        return .list(items)
    }

    private func hasEmptyMapMetatable(at index: Int32) -> Bool {
        guard lua_getmetatable(state, index) != 0 else { return false }
        _ = lua_getfield(state, maestro_lua_registry_index(), emptyMapMetatableKey)
        let same = lua_rawequal(state, -1, -2) != 0
        maestro_lua_pop(state, 2)
        return same
    }
}
