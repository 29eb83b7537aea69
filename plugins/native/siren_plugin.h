/*
 * siren_plugin.h - the Siren native plugin ABI, version 1.
 *
 * A native plugin is a shared library (`.so`) that sirend opens with dlopen(RTLD_NOW | RTLD_LOCAL)
 * and never closes. ABI 1 defines one kind of plugin: a credential verifier, the backend behind
 * the password (`PLAIN`) mechanism ("is this the password of that user?", "does this user
 * exist?").
 *
 * Loading, in this order (proxy-wasm style: the version comes first):
 *
 *   1. sirend resolves `siren_plugin_abi_version` and calls it, before resolving or calling
 *      anything else. If it is missing, or returns a version other than the one sirend speaks,
 *      the load is refused ("libfoo.so implements Siren native ABI 2; this server speaks 1").
 *   2. It resolves every required symbol below; a missing one refuses the load, naming it.
 *   3. It calls `siren_plugin_name`, then `siren_plugin_init` with the plugin's configuration.
 *   4. From then on it calls `siren_plugin_verify` and `siren_plugin_user_exists` with the
 *      context `siren_plugin_init` returned.
 *
 * Note that dlopen runs the library's constructors before step 1: keep them trivial.
 *
 * Strings. Every (pointer, length) pair is UTF-8 of exactly `length` bytes, and sirend also
 * puts a NUL byte right after the last one (not counted in `length`) and never passes a string
 * with a NUL inside (a password containing NUL is refused by sirend without calling the
 * plugin), so C code may treat them as C strings. Usernames are already normalised by sirend:
 * 1 to 64 bytes of lowercase letters, digits, '.', '_' and '-'.
 *
 * Ownership. Every pointer sirend passes is borrowed for the duration of the call only: copy
 * what you keep. The string `siren_plugin_name` returns is owned by the plugin and must stay
 * valid while the library is loaded (a static string). The context returned by
 * `siren_plugin_init` is owned by the plugin; sirend passes it back unchanged and, if the plugin
 * exports `siren_plugin_free`, hands it back there once no call is running and none will be
 * made with it again. The library itself is never unloaded.
 *
 * Threads. sirend calls `siren_plugin_verify` and `siren_plugin_user_exists` from several
 * threads at once, with the same context: they must be thread-safe (an immutable context, or
 * one guarded by the plugin's own locks). Each call runs on a thread of sirend's blocking pool,
 * so a call may block (a network round trip, a slow password hash), but a login waits for it:
 * apply your own timeouts to anything remote. `siren_plugin_init` may be called several times
 * (the same library configured twice yields two contexts), never concurrently with itself.
 *
 * Failures. Nothing may unwind across this boundary: C++ must catch its exceptions and Rust
 * its panics (std::panic::catch_unwind) inside each exported function and return
 * SIREN_PLUGIN_ERR_INTERNAL instead. Only SIREN_PLUGIN_YES means yes; any other positive value
 * is treated as an error by sirend, so a bug fails closed. An unknown user must be answered like
 * a wrong password (SIREN_PLUGIN_NO) and, ideally, in the same time.
 */
#ifndef SIREN_PLUGIN_H
#define SIREN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes. Return it from siren_plugin_abi_version. */
#define SIREN_PLUGIN_ABI_VERSION 1u

/* Results of siren_plugin_verify and siren_plugin_user_exists. */
#define SIREN_PLUGIN_YES 1
#define SIREN_PLUGIN_NO 0
/* The backend behind the plugin is unavailable (a directory is down); the login fails closed
 * and sirend reports "unavailable". */
#define SIREN_PLUGIN_ERR_UNAVAILABLE (-1)
/* Anything else that went wrong (a bug, a caught panic or exception). Every other negative
 * value is treated the same way. */
#define SIREN_PLUGIN_ERR_INTERNAL (-2)

/* Size of the error buffer sirend passes to siren_plugin_init, terminating NUL included. */
#define SIREN_PLUGIN_ERROR_CAPACITY 512u

/* Marks a function as exported even when compiling with -fvisibility=hidden. */
#if defined(__GNUC__) || defined(__clang__)
#define SIREN_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define SIREN_PLUGIN_EXPORT
#endif

/* Required. The ABI version the plugin implements: SIREN_PLUGIN_ABI_VERSION. Called first. */
SIREN_PLUGIN_EXPORT uint32_t siren_plugin_abi_version(void);

/* Required. The plugin's name for logs and `sirend plugins list`: a static NUL-terminated
 * string of 1 to 64 printable ASCII characters without spaces, e.g. "pam-auth". */
SIREN_PLUGIN_EXPORT const char *siren_plugin_name(void);

/* Required. Creates the plugin's context from its configuration.
 *
 * `config` holds the `[...config]` table of the plugin's entry in sirend's configuration as
 * UTF-8 lines `key=value\n`, sorted by key, one per entry (the last line also ends with '\n';
 * an empty table gives length 0). Keys are non-empty and contain no '=', CR, LF or NUL; values
 * contain no CR, LF or NUL; nothing is trimmed or unescaped. Unknown keys should be refused.
 *
 * Returns the context (any non-NULL pointer), or NULL on failure after writing a NUL-terminated
 * UTF-8 message of at most `error_capacity` bytes (terminator included) into `error`, which
 * sirend shows to the operator. `error` is zero-filled and `error_capacity` is
 * SIREN_PLUGIN_ERROR_CAPACITY. */
SIREN_PLUGIN_EXPORT void *siren_plugin_init(const uint8_t *config, size_t config_len,
                                            char *error, size_t error_capacity);

/* Required. Whether `password` is the password of `user`: SIREN_PLUGIN_YES, SIREN_PLUGIN_NO, or a
 * negative error. Thread-safe. */
SIREN_PLUGIN_EXPORT int32_t siren_plugin_verify(void *ctx, const uint8_t *user, size_t user_len,
                                                const uint8_t *password, size_t password_len);

/* Required. Whether `user` exists: SIREN_PLUGIN_YES, SIREN_PLUGIN_NO, or a negative error.
 * Thread-safe. */
SIREN_PLUGIN_EXPORT int32_t siren_plugin_user_exists(void *ctx, const uint8_t *user,
                                                     size_t user_len);

/* Optional. Releases a context made by siren_plugin_init (sirend calls it when the backend is
 * dropped, after its last call). */
SIREN_PLUGIN_EXPORT void siren_plugin_free(void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* SIREN_PLUGIN_H */
