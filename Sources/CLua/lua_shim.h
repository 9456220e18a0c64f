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
};

// How many VM instructions run between two calls of the count hook.
#define MAESTRO_LUA_HOOK_INTERVAL 1000

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
    if (limits->cap != 0 && limits->host_allowance == 0 && nsize > old
        && limits->used - old + nsize > limits->cap) {
        return NULL;
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
    if (status == LUA_ERRMEM) limits->terminated = MAESTRO_LUA_TERMINATED_MEMORY;
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

// maestro.fail: a terminal failure that no sandboxed pcall can catch.
static inline void maestro_lua_mark_failed(lua_State *L) {
    maestro_lua_limits_of(L)->terminated = MAESTRO_LUA_TERMINATED_FAILED;
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
