/*
 * c_auth.c - a native Siren auth plugin in C (Siren native ABI 1): one user, whose name and
 * password come from the plugin's configuration.
 *
 *   cc -std=c11 -Wall -Wextra -O2 -shared -fPIC -I plugins/native \
 *      -o libc_auth.so plugins/native/examples/c_auth.c
 *
 *   [[plugins.native]]
 *   path = "libc_auth.so"
 *   config = { user = "alice", password = "correct horse" }
 *
 * The context is immutable after siren_plugin_init, so concurrent calls are safe without locks.
 * Plain-text passwords in a configuration file are for demonstrations only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "siren_plugin.h"

struct c_auth {
    char *user;
    size_t user_len;
    char *password;
    size_t password_len;
};

static char *copy(const char *s, size_t n) {
    char *out = malloc(n + 1);
    if (out != NULL) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

/* Compares in time that depends only on the lengths, never on where the bytes differ. */
static int equal_ct(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len) {
    unsigned char diff = (unsigned char)(a_len != b_len);
    size_t n = a_len < b_len ? a_len : b_len;
    for (size_t i = 0; i < n; i++) {
        diff |= (unsigned char)(a[i] ^ b[i]);
    }
    return diff == 0;
}

static void free_auth(struct c_auth *auth) {
    if (auth != NULL) {
        free(auth->user);
        free(auth->password);
        free(auth);
    }
}

SIREN_PLUGIN_EXPORT uint32_t siren_plugin_abi_version(void) {
    return SIREN_PLUGIN_ABI_VERSION;
}

SIREN_PLUGIN_EXPORT const char *siren_plugin_name(void) {
    return "c-auth";
}

SIREN_PLUGIN_EXPORT void *siren_plugin_init(const uint8_t *config, size_t config_len,
                                            char *error, size_t error_capacity) {
    struct c_auth *auth = calloc(1, sizeof *auth);
    if (auth == NULL) {
        snprintf(error, error_capacity, "out of memory");
        return NULL;
    }
    /* `config` is "key=value\n" lines; the host also NUL-terminates it, but lengths suffice. */
    const char *p = (const char *)config;
    const char *end = p + config_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl != NULL ? nl : end;
        const char *eq = memchr(p, '=', (size_t)(line_end - p));
        if (eq == NULL) {
            snprintf(error, error_capacity, "malformed configuration line");
            free_auth(auth);
            return NULL;
        }
        size_t key_len = (size_t)(eq - p);
        const char *value = eq + 1;
        size_t value_len = (size_t)(line_end - value);
        if (key_len == 4 && memcmp(p, "user", 4) == 0) {
            free(auth->user);
            auth->user = copy(value, value_len);
            auth->user_len = value_len;
        } else if (key_len == 8 && memcmp(p, "password", 8) == 0) {
            free(auth->password);
            auth->password = copy(value, value_len);
            auth->password_len = value_len;
        } else {
            snprintf(error, error_capacity, "unknown setting \"%.*s\" (c-auth knows user, password)",
                     (int)key_len, p);
            free_auth(auth);
            return NULL;
        }
        p = line_end + 1;
    }
    if (auth->user == NULL || auth->password == NULL || auth->password_len == 0) {
        snprintf(error, error_capacity, "c-auth needs `user` and a non-empty `password`");
        free_auth(auth);
        return NULL;
    }
    return auth;
}

SIREN_PLUGIN_EXPORT int32_t siren_plugin_verify(void *ctx, const uint8_t *user, size_t user_len,
                                                const uint8_t *password, size_t password_len) {
    const struct c_auth *auth = ctx;
    /* Compare the password even for an unknown user, and only then look at the name. */
    int password_ok = equal_ct((const uint8_t *)auth->password, auth->password_len, password,
                               password_len);
    int user_ok = user_len == auth->user_len && memcmp(user, auth->user, user_len) == 0;
    return password_ok && user_ok ? SIREN_PLUGIN_YES : SIREN_PLUGIN_NO;
}

SIREN_PLUGIN_EXPORT int32_t siren_plugin_user_exists(void *ctx, const uint8_t *user,
                                                     size_t user_len) {
    const struct c_auth *auth = ctx;
    int user_ok = user_len == auth->user_len && memcmp(user, auth->user, user_len) == 0;
    return user_ok ? SIREN_PLUGIN_YES : SIREN_PLUGIN_NO;
}

SIREN_PLUGIN_EXPORT void siren_plugin_free(void *ctx) {
    free_auth(ctx);
}
