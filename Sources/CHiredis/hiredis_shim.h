// hiredis 0.14. redisCommand is variadic and cannot be called from Swift: maestro uses only the argv
// forms (redisCommandArgv, redisAppendCommandArgv), which are binary-safe.
#ifndef MAESTRO_HIREDIS_SHIM_H
#define MAESTRO_HIREDIS_SHIM_H
#include <hiredis.h>
#include <sys/time.h>

static inline redisContext *maestro_redis_connect(const char *host, int port, long timeout_ms) {
    struct timeval timeout = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    return redisConnectWithTimeout(host, port, timeout);
}

static inline int maestro_redis_set_timeout(redisContext *context, long timeout_ms) {
    struct timeval timeout = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    return redisSetTimeout(context, timeout);
}

// redisGetReply takes a void**; this keeps the cast in C.
static inline int maestro_redis_get_reply(redisContext *context, redisReply **reply) {
    return redisGetReply(context, (void **)reply);
}
#endif
