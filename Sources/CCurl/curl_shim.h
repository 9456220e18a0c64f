// libcurl. curl_easy_setopt and curl_easy_getinfo are variadic: one typed wrapper per argument kind.
#ifndef MAESTRO_CURL_SHIM_H
#define MAESTRO_CURL_SHIM_H
#include <curl/curl.h>

typedef size_t (*maestro_curl_data_callback)(char *data, size_t size, size_t count, void *context);
// CURLOPT_XFERINFOFUNCTION: called about once a second even while no byte moves; non-zero aborts.
typedef int (*maestro_curl_xferinfo_callback)(void *context, curl_off_t download_total, curl_off_t downloaded,
                                              curl_off_t upload_total, curl_off_t uploaded);

static inline CURLcode maestro_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode maestro_curl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode maestro_curl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode maestro_curl_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode maestro_curl_setopt_callback(CURL *handle, CURLoption option, maestro_curl_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode maestro_curl_setopt_xferinfo(CURL *handle, maestro_curl_xferinfo_callback value) {
    return curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, value);
}
// The blob options (PEM in memory) take a struct; CURL_BLOB_COPY makes curl keep its own copy.
static inline CURLcode maestro_curl_setopt_blob(CURL *handle, CURLoption option, const void *data, size_t length) {
    struct curl_blob blob = { (void *)data, length, CURL_BLOB_COPY };
    return curl_easy_setopt(handle, option, &blob);
}
static inline CURLcode maestro_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode maestro_curl_getinfo_string(CURL *handle, CURLINFO info, char **value) {
    return curl_easy_getinfo(handle, info, value);
}
#endif
