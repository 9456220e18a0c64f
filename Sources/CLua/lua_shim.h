// Shims for Lua 5.4. Swift imports neither function-like macros nor variadic functions, and a Lua error
// is a longjmp that must never cross a Swift frame: everything that may raise lives here, in C.
#ifndef MAESTRO_LUA_SHIM_H
#define MAESTRO_LUA_SHIM_H

#include <math.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Why a call ended terminally; a terminated call cannot be caught by the sandboxed pcall.
enum {
    MAESTRO_LUA_RUNNING = 0,
    MAESTRO_LUA_TERMINATED_BUDGET = 1,
    MAESTRO_LUA_TERMINATED_MEMORY = 2,
    MAESTRO_LUA_TERMINATED_FAILED = 3,
    MAESTRO_LUA_TERMINATED_REJECTED = 4,
};

// How many VM instructions run between two calls of the count hook.
#define MAESTRO_LUA_HOOK_INTERVAL 1000

// Allocation is work the count hook cannot see (string.rep, concatenation, load, table growth): every
// this many bytes allocated during a call are charged as one instruction.
#define MAESTRO_LUA_BYTES_PER_INSTRUCTION 8

// Once a call has run out of budget, allocations this large are refused: each one is work (a copy of
// that many bytes), and the hook may not run again before the next 1,000 instructions.
#define MAESTRO_LUA_LARGE_ALLOCATION 65536

// Per-VM accounting shared with Swift. It is the allocator's `ud`, so every coroutine reaches it.
typedef struct maestro_lua_limits {
    size_t used;            // bytes allocated now
    size_t peak;            // highest `used` since the last reset
    size_t cap;             // memory cap in bytes; 0 = none
    int host_allowance;     // > 0 while Swift marshals values: the cap is checked after, never during
    long long budget;       // instructions allowed for the current call; 0 = unlimited
    long long spent;        // instructions charged to the current call
    int terminated;         // MAESTRO_LUA_TERMINATED_* once the call hit a limit
} maestro_lua_limits;

static inline maestro_lua_limits *maestro_lua_limits_of(lua_State *L) {
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return (maestro_lua_limits *)ud;
}

// The allocator enforcing the memory cap. Returning NULL makes Lua run an emergency collection and
// retry, then raise LUA_ERRMEM; the state stays usable.
static void *maestro_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    maestro_lua_limits *limits = (maestro_lua_limits *)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        limits->used -= old;
        return NULL;
    }
    if (nsize > old && limits->host_allowance == 0) {
        if (limits->cap != 0 && limits->used - old + nsize > limits->cap) return NULL;
        if (limits->budget > 0) {
            limits->spent += (long long)((nsize - old) / MAESTRO_LUA_BYTES_PER_INSTRUCTION);
            if (limits->terminated == MAESTRO_LUA_RUNNING && limits->spent > limits->budget) {
                limits->terminated = MAESTRO_LUA_TERMINATED_BUDGET;
            }
            if (limits->terminated != MAESTRO_LUA_RUNNING && nsize - old >= MAESTRO_LUA_LARGE_ALLOCATION) return NULL;
        }
    }
    void *block = realloc(ptr, nsize);
    if (block == NULL) return NULL;
    limits->used = limits->used - old + nsize;
    if (limits->used > limits->peak) limits->peak = limits->used;
    return block;
}

static int maestro_lua_panic(lua_State *L) {
    // Only reached if an error escapes every protected call: a bug in maestro, never in a plugin.
    const char *message = lua_tostring(L, -1);
    fprintf(stderr, "maestro: unprotected Lua error: %s\n", message ? message : "(not a string)");
    abort();
    return 0;
}

// Raised again after any sandboxed catch once a limit was hit.
static int maestro_lua_raise_terminated(lua_State *L) {
    maestro_lua_limits *limits = maestro_lua_limits_of(L);
    if (limits->terminated == MAESTRO_LUA_TERMINATED_MEMORY) {
        lua_pushliteral(L, "not enough memory: the plugin's memory cap was exceeded");
        return lua_error(L);
    }
    if (limits->terminated == MAESTRO_LUA_TERMINATED_FAILED) {
        lua_pushliteral(L, "maestro.fail was called");
        return lua_error(L);
    }
    if (limits->terminated == MAESTRO_LUA_TERMINATED_REJECTED) {
        lua_pushliteral(L, "maestro.reject was called");
        return lua_error(L);
    }
    return luaL_error(L, "instruction budget of %I instructions exceeded", (lua_Integer)limits->budget);
}

// The count hook is C because it raises. Once a call has run out of budget every later hook call
// raises again, so neither pcall loops nor coroutines can outlive the budget.
static void maestro_lua_count_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    maestro_lua_limits *limits = maestro_lua_limits_of(L);
    limits->spent += MAESTRO_LUA_HOOK_INTERVAL;
    if (limits->terminated == MAESTRO_LUA_RUNNING && limits->budget > 0 && limits->spent > limits->budget) {
        limits->terminated = MAESTRO_LUA_TERMINATED_BUDGET;
    }
    if (limits->terminated != MAESTRO_LUA_RUNNING) maestro_lua_raise_terminated(L);
}

static inline lua_State *maestro_lua_newstate(maestro_lua_limits *limits) {
    lua_State *L = lua_newstate(maestro_lua_alloc, limits);
    if (L != NULL) lua_atpanic(L, maestro_lua_panic);
    return L;
}

// Re-armed before each top-level call: lua_sethook resets the count.
static inline void maestro_lua_arm(lua_State *L, long long budget) {
    maestro_lua_limits *limits = maestro_lua_limits_of(L);
    limits->budget = budget;
    limits->spent = 0;
    limits->terminated = MAESTRO_LUA_RUNNING;
    lua_sethook(L, maestro_lua_count_hook, LUA_MASKCOUNT, MAESTRO_LUA_HOOK_INTERVAL);
}

static int maestro_lua_finish_pcall(lua_State *L, int status, lua_KContext extra) {
    maestro_lua_limits *limits = maestro_lua_limits_of(L);
    // A refused allocation after the budget ran out is the budget's error, not the memory cap's.
    if (status == LUA_ERRMEM && limits->terminated == MAESTRO_LUA_RUNNING) limits->terminated = MAESTRO_LUA_TERMINATED_MEMORY;
    if (limits->terminated != MAESTRO_LUA_RUNNING) return maestro_lua_raise_terminated(L);
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

// pcall for the sandbox: Lua's own semantics, except that a hit limit is re-raised.
static int maestro_lua_sandbox_pcall(lua_State *L) {
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, maestro_lua_finish_pcall);
    return maestro_lua_finish_pcall(L, status, 0);
}

// The plugin's message handler, not called once a limit was hit: a handler that loops would be
// re-entered for its own budget error at every level of Lua's C stack.
static int maestro_lua_guarded_message_handler(lua_State *L) {
    if (maestro_lua_limits_of(L)->terminated != MAESTRO_LUA_RUNNING) {
        lua_settop(L, 1);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

// xpcall for the sandbox, as pcall above.
static int maestro_lua_sandbox_xpcall(lua_State *L) {
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, maestro_lua_guarded_message_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, maestro_lua_finish_pcall);
    return maestro_lua_finish_pcall(L, status, 2);
}

// Wraps a function that reports errors as values (coroutine.resume, coroutine.close): the original is
// upvalue 1; a hit limit inside the coroutine is re-raised in the caller.
static int maestro_lua_sandbox_guard_results(lua_State *L) {
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    if (maestro_lua_limits_of(L)->terminated != MAESTRO_LUA_RUNNING) return maestro_lua_raise_terminated(L);
    return lua_gettop(L);
}

// Creating a coroutine starts a fresh hook count on the new thread: charge a full interval up front so
// that many short coroutines cannot run unbudgeted. Upvalue 1 is the original creator.
static int maestro_lua_sandbox_charge_coroutine(lua_State *L) {
    maestro_lua_limits *limits = maestro_lua_limits_of(L);
    limits->spent += MAESTRO_LUA_HOOK_INTERVAL;
    if (limits->budget > 0 && limits->spent > limits->budget) {
        limits->terminated = MAESTRO_LUA_TERMINATED_BUDGET;
        return maestro_lua_raise_terminated(L);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

// Message handler: adds the traceback. Never calls __tostring: an error object's metamethods are the
// plugin's code and could loop or raise.
static int maestro_lua_message_handler(lua_State *L) {
    const char *message = NULL;
    if (lua_type(L, 1) == LUA_TSTRING) {
        message = lua_tostring(L, 1);
    } else {
        message = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, message, 1);
    return 1;
}

// A host function implemented in Swift. It returns the number of results it pushed, or -1 after
// pushing an error message, which the trampoline raises: Swift itself never raises.
typedef int (*maestro_lua_host_fn)(lua_State *L, void *context);

static int maestro_lua_trampoline(lua_State *L) {
    maestro_lua_host_fn fn = (maestro_lua_host_fn)lua_touserdata(L, lua_upvalueindex(1));
    void *context = lua_touserdata(L, lua_upvalueindex(2));
    maestro_lua_limits *limits = maestro_lua_limits_of(L);
    // Lua's C API raises LUA_ERRMEM on a failed allocation; inside Swift that would be a longjmp over
    // Swift frames, so the cap is lifted while Swift runs and enforced right after it returns.
    limits->host_allowance++;
    if (!lua_checkstack(L, 40)) {
        limits->host_allowance--;
        return luaL_error(L, "stack overflow in host call");
    }
    int results = fn(L, context);
    limits->host_allowance--;
    if (limits->terminated != MAESTRO_LUA_RUNNING) return maestro_lua_raise_terminated(L);
    if (results < 0) return lua_error(L);
    if (limits->cap != 0 && limits->used > limits->cap) {
        lua_gc(L, LUA_GCCOLLECT);
        if (limits->used > limits->cap) {
            limits->terminated = MAESTRO_LUA_TERMINATED_MEMORY;
            return maestro_lua_raise_terminated(L);
        }
    }
    return results;
}

static inline void maestro_lua_push_host_function(lua_State *L, maestro_lua_host_fn fn, void *context) {
    lua_pushlightuserdata(L, (void *)fn);
    lua_pushlightuserdata(L, context);
    lua_pushcclosure(L, maestro_lua_trampoline, 2);
}

static inline void maestro_lua_push_sandbox_pcall(lua_State *L) { lua_pushcfunction(L, maestro_lua_sandbox_pcall); }
static inline void maestro_lua_push_sandbox_xpcall(lua_State *L) { lua_pushcfunction(L, maestro_lua_sandbox_xpcall); }

// Lua-callable makers of the two wrappers above: f -> wrapped f.
static int maestro_lua_make_guard_results(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_pushcclosure(L, maestro_lua_sandbox_guard_results, 1);
    return 1;
}
static int maestro_lua_make_charge_coroutine(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_pushcclosure(L, maestro_lua_sandbox_charge_coroutine, 1);
    return 1;
}
static inline void maestro_lua_push_make_guard_results(lua_State *L) { lua_pushcfunction(L, maestro_lua_make_guard_results); }

// Charges n instructions to the current call (work done in C that the count hook cannot see, such as
// the native pattern matcher); raises once the budget is spent, like the hook.
static int maestro_lua_sandbox_charge(lua_State *L) {
    maestro_lua_limits *limits = maestro_lua_limits_of(L);
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n > 0) limits->spent += (long long)n;
    if (limits->terminated == MAESTRO_LUA_RUNNING && limits->budget > 0 && limits->spent > limits->budget) {
        limits->terminated = MAESTRO_LUA_TERMINATED_BUDGET;
    }
    if (limits->terminated != MAESTRO_LUA_RUNNING) return maestro_lua_raise_terminated(L);
    return 0;
}

// Instructions left in the current call's budget; math.huge when it has none.
static int maestro_lua_sandbox_budget_left(lua_State *L) {
    maestro_lua_limits *limits = maestro_lua_limits_of(L);
    if (limits->budget <= 0) {
        lua_pushnumber(L, HUGE_VAL);
    } else {
        lua_pushinteger(L, (lua_Integer)(limits->budget > limits->spent ? limits->budget - limits->spent : 0));
    }
    return 1;
}
static inline void maestro_lua_push_sandbox_charge(lua_State *L) { lua_pushcfunction(L, maestro_lua_sandbox_charge); }
static inline void maestro_lua_push_sandbox_budget_left(lua_State *L) { lua_pushcfunction(L, maestro_lua_sandbox_budget_left); }
static inline void maestro_lua_push_make_charge_coroutine(lua_State *L) { lua_pushcfunction(L, maestro_lua_make_charge_coroutine); }

// Charges n instructions for work the host did in Swift (converting values). Never raises: returns 0
// once the budget is spent, and the trampoline raises when Swift returns.
static inline int maestro_lua_charge_host(lua_State *L, long long n) {
    maestro_lua_limits *limits = maestro_lua_limits_of(L);
    limits->spent += n;
    if (limits->terminated == MAESTRO_LUA_RUNNING && limits->budget > 0 && limits->spent > limits->budget) {
        limits->terminated = MAESTRO_LUA_TERMINATED_BUDGET;
    }
    return limits->terminated == MAESTRO_LUA_RUNNING;
}

// The memory cap (0 = none) and what is left under it. The cap is lifted while Swift builds values in
// the VM (an allocation failure would raise through Swift frames), so the host checks these as it goes.
static inline size_t maestro_lua_memory_cap(lua_State *L) { return maestro_lua_limits_of(L)->cap; }
static inline size_t maestro_lua_memory_left(lua_State *L) {
    maestro_lua_limits *limits = maestro_lua_limits_of(L);
    if (limits->cap == 0) return (size_t)-1;
    return limits->used < limits->cap ? limits->cap - limits->used : 0;
}

// A value the host was building went over the memory cap: the call fails as if Lua had run out.
static inline void maestro_lua_mark_out_of_memory(lua_State *L) {
    maestro_lua_limits *limits = maestro_lua_limits_of(L);
    if (limits->terminated == MAESTRO_LUA_RUNNING) limits->terminated = MAESTRO_LUA_TERMINATED_MEMORY;
}

// Work done by a C function of the library, charged before it is done (n may be a float or beyond the
// integers); raises once the budget is spent, like the hook.
static void maestro_lua_charge_work(lua_State *L, lua_Number n) {
    if (!(n >= 1)) return;
    maestro_lua_limits *limits = maestro_lua_limits_of(L);
    if (limits->budget <= 0) return;
    limits->spent += n < (lua_Number)limits->budget ? (long long)n : limits->budget;
    if (limits->terminated == MAESTRO_LUA_RUNNING && limits->spent > limits->budget) {
        limits->terminated = MAESTRO_LUA_TERMINATED_BUDGET;
    }
    if (limits->terminated != MAESTRO_LUA_RUNNING) maestro_lua_raise_terminated(L);
}

// The library functions whose loops allocate nothing, so the allocator does not see their work. Each
// wrapper is a closure: upvalue 1 the original C function, called directly on the same stack (so its
// errors read as before); upvalue 2, where there is one, a Lua version for tables with a metatable,
// whose __len could answer differently when the original asks again.
#define MAESTRO_LUA_ORIGINAL(L) (lua_tocfunction((L), lua_upvalueindex(1)))

static int maestro_lua_call_slow(lua_State *L) {
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

// The raw length of a table with no metatable; -1 for anything else.
static lua_Integer maestro_lua_plain_length(lua_State *L, int index) {
    if (lua_type(L, index) != LUA_TTABLE) return -1;
    if (lua_getmetatable(L, index)) {
        lua_pop(L, 1);
        return -1;
    }
    return (lua_Integer)lua_rawlen(L, index);
}

// table.insert(t, pos, v) moves #t - pos + 1 elements.
static int maestro_lua_table_insert(lua_State *L) {
    if (lua_gettop(L) == 3 && lua_type(L, 1) == LUA_TTABLE) {
        lua_Integer length = maestro_lua_plain_length(L, 1);
        if (length < 0) return maestro_lua_call_slow(L);
        int valid = 0;
        lua_Integer pos = lua_tointegerx(L, 2, &valid);
        if (valid) maestro_lua_charge_work(L, (lua_Number)length + 1 - (lua_Number)pos);
    }
    return MAESTRO_LUA_ORIGINAL(L)(L);
}

// table.remove(t [, pos]) moves #t - pos elements.
static int maestro_lua_table_remove(lua_State *L) {
    if (lua_type(L, 1) == LUA_TTABLE) {
        lua_Integer length = maestro_lua_plain_length(L, 1);
        if (length < 0) return maestro_lua_call_slow(L);
        int valid = 1;
        lua_Integer pos = lua_isnoneornil(L, 2) ? length : lua_tointegerx(L, 2, &valid);
        if (valid) maestro_lua_charge_work(L, (lua_Number)length - (lua_Number)pos);
    }
    return MAESTRO_LUA_ORIGINAL(L)(L);
}

// table.move(a1, f, e, t [, a2]) copies e - f + 1 elements.
static int maestro_lua_table_move(lua_State *L) {
    int first_valid = 0, last_valid = 0;
    lua_Integer first = lua_tointegerx(L, 2, &first_valid);
    lua_Integer last = lua_tointegerx(L, 3, &last_valid);
    if (first_valid && last_valid && last >= first) maestro_lua_charge_work(L, (lua_Number)last - (lua_Number)first + 1);
    return MAESTRO_LUA_ORIGINAL(L)(L);
}

// Sets the end of a range argument (slot `index`) to #t when it was not given, so that the original
// loops over exactly the range charged here. Returns the number of elements in [i, j].
static lua_Number maestro_lua_range(lua_State *L, int first_index, int last_index) {
    if (lua_gettop(L) < last_index) lua_settop(L, last_index);
    if (lua_isnil(L, last_index)) {
        lua_Integer length = luaL_len(L, 1);
        lua_pushinteger(L, length);
        lua_replace(L, last_index);
    }
    int first_valid = 1, last_valid = 0;
    lua_Integer first = lua_isnil(L, first_index) ? 1 : lua_tointegerx(L, first_index, &first_valid);
    lua_Integer last = lua_tointegerx(L, last_index, &last_valid);
    if (!first_valid || !last_valid || last < first) return 0;
    return (lua_Number)last - (lua_Number)first + 1;
}

// table.concat(t, sep, i, j) reads j - i + 1 elements.
static int maestro_lua_table_concat(lua_State *L) {
    if (lua_type(L, 1) == LUA_TTABLE) maestro_lua_charge_work(L, maestro_lua_range(L, 3, 4));
    return MAESTRO_LUA_ORIGINAL(L)(L);
}

// table.unpack(t, i, j) reads j - i + 1 elements; more than Lua's stack holds is the original's error.
static int maestro_lua_table_unpack(lua_State *L) {
    lua_Number n = maestro_lua_range(L, 2, 3);
    maestro_lua_charge_work(L, n < 1000000 ? n : 1000000);
    return MAESTRO_LUA_ORIGINAL(L)(L);
}

// table.sort(t) without a comparison function: n log2 n comparisons in C. With one, the function's
// own instructions are counted as it runs.
static int maestro_lua_table_sort(lua_State *L) {
    if (lua_type(L, 1) == LUA_TTABLE) {
        lua_Integer length = maestro_lua_plain_length(L, 1);
        if (length < 0) return maestro_lua_call_slow(L);
        if (lua_isnoneornil(L, 2) && length > 1) maestro_lua_charge_work(L, (lua_Number)length * (log2((lua_Number)length) + 1));
    }
    return MAESTRO_LUA_ORIGINAL(L)(L);
}

// string.rep("", n) is "" however large n is; Lua would still loop n times.
static int maestro_lua_string_rep(lua_State *L) {
    size_t length = 1, separator = 0;
    int valid = 0;
    if (lua_type(L, 1) == LUA_TSTRING) lua_tolstring(L, 1, &length);
    if (lua_type(L, 3) == LUA_TSTRING) lua_tolstring(L, 3, &separator);
    else if (!lua_isnoneornil(L, 3)) separator = 1;
    (void)lua_tointegerx(L, 2, &valid);
    if (length == 0 && separator == 0 && valid) {
        lua_pushliteral(L, "");
        return 1;
    }
    return MAESTRO_LUA_ORIGINAL(L)(L);
}

// string.byte returns up to a million values: charged by the value, after.
static int maestro_lua_string_byte(lua_State *L) {
    int results = MAESTRO_LUA_ORIGINAL(L)(L);
    if (results > 16) maestro_lua_charge_work(L, results);
    return results;
}

// string.char and utf8.char take any number of values: charged by the value.
static int maestro_lua_charge_arguments(lua_State *L) {
    if (lua_gettop(L) > 16) maestro_lua_charge_work(L, lua_gettop(L));
    return MAESTRO_LUA_ORIGINAL(L)(L);
}

// Lua-callable: wrap(name, original [, slow]) -> the charged version of a library function.
static int maestro_lua_make_charged(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    luaL_argcheck(L, lua_tocfunction(L, 2) != NULL, 2, "C function expected");
    lua_CFunction wrapper = NULL;
    if (strcmp(name, "insert") == 0) wrapper = maestro_lua_table_insert;
    else if (strcmp(name, "remove") == 0) wrapper = maestro_lua_table_remove;
    else if (strcmp(name, "move") == 0) wrapper = maestro_lua_table_move;
    else if (strcmp(name, "concat") == 0) wrapper = maestro_lua_table_concat;
    else if (strcmp(name, "unpack") == 0) wrapper = maestro_lua_table_unpack;
    else if (strcmp(name, "sort") == 0) wrapper = maestro_lua_table_sort;
    else if (strcmp(name, "rep") == 0) wrapper = maestro_lua_string_rep;
    else if (strcmp(name, "byte") == 0) wrapper = maestro_lua_string_byte;
    else if (strcmp(name, "char") == 0) wrapper = maestro_lua_charge_arguments;
    else return luaL_argerror(L, 1, "no charged version of this function");
    lua_settop(L, 3);
    lua_pushcclosure(L, wrapper, 2);
    return 1;
}
static inline void maestro_lua_push_make_charged(lua_State *L) { lua_pushcfunction(L, maestro_lua_make_charged); }

// maestro.fail: a terminal failure that no sandboxed pcall can catch.
static inline void maestro_lua_mark_failed(lua_State *L) {
    maestro_lua_limits_of(L)->terminated = MAESTRO_LUA_TERMINATED_FAILED;
}

// maestro.reject: the user's config is wrong; like maestro.fail, no sandboxed pcall can swallow it.
static inline void maestro_lua_mark_rejected(lua_State *L) {
    maestro_lua_limits_of(L)->terminated = MAESTRO_LUA_TERMINATED_REJECTED;
}

// Calls the function below `nargs` arguments with the traceback handler; the handler is removed again.
static inline int maestro_lua_pcall(lua_State *L, int nargs, int nresults) {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, maestro_lua_message_handler);
    lua_insert(L, base);
    int status = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    return status;
}

// Opens one standard library under its name in the global table (luaL_requiref pushes a copy).
static int maestro_lua_open_standard_libraries_protected(lua_State *L) {
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    luaL_requiref(L, LUA_COLIBNAME, luaopen_coroutine, 1);
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 1);
    lua_pop(L, 7);
    return 0;
}

// Only the libraries the sandbox keeps are ever opened (no io, no debug, no package).
static inline int maestro_lua_open_standard_libraries(lua_State *L) {
    lua_pushcfunction(L, maestro_lua_open_standard_libraries_protected);
    return lua_pcall(L, 0, 0, 0);
}

// Loads a text chunk (never bytecode), protected.
static inline int maestro_lua_load_text(lua_State *L, const char *code, size_t length, const char *chunkname) {
    return luaL_loadbufferx(L, code, length, chunkname, "t");
}

// Macro and constant wrappers.
static inline int maestro_lua_registry_index(void) { return LUA_REGISTRYINDEX; }
static inline void maestro_lua_pop(lua_State *L, int n) { lua_pop(L, n); }
static inline void maestro_lua_newtable(lua_State *L) { lua_newtable(L); }
static inline const char *maestro_lua_tolstring(lua_State *L, int index, size_t *length) { return lua_tolstring(L, index, length); }
static inline lua_Integer maestro_lua_tointeger(lua_State *L, int index) { return lua_tointegerx(L, index, NULL); }
static inline lua_Number maestro_lua_tonumber(lua_State *L, int index) { return lua_tonumberx(L, index, NULL); }
static inline void maestro_lua_insert(lua_State *L, int index) { lua_insert(L, index); }
static inline void maestro_lua_remove(lua_State *L, int index) { lua_remove(L, index); }
static inline void maestro_lua_gc_collect(lua_State *L) { lua_gc(L, LUA_GCCOLLECT); }
static inline int maestro_lua_gc_count_kb(lua_State *L) { return lua_gc(L, LUA_GCCOUNT); }

#endif
