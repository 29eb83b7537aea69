/*
 * c-allowlist: a Siren federation policy written in C, proving the plugin interface is
 * language-neutral. It implements world `federation-plugin` of siren:plugin@0.1.0
 * (plugins/wit/siren-plugin.wit) by hand, following the component model's canonical ABI,
 * with no libc and no generated bindings:
 *
 *   clang-14 --target=wasm32 -O2 -nostdlib -mbulk-memory -fno-builtin \
 *       -Wl,--no-entry -o core.wasm allowlist.c
 *   wasm-tools component embed plugins/wit --world federation-plugin core.wasm -o embedded.wasm
 *   wasm-tools component new embedded.wasm -o c-allowlist.wasm
 *
 * Configuration: peers = "beta.test, gamma.test" (required). Peer names are compared without
 * regard to ASCII case.
 *
 * Memory: one static arena serves cabi_realloc (the host copies arguments into it) and the
 * strings returned; each export's post-return function empties it once the host has read the
 * result. The configured peers are copied out of the arena into their own buffer by init.
 * (For bigger C plugins, `wit-bindgen c` generates this glue.)
 */

typedef unsigned int u32;
typedef unsigned char u8;

#define EXPORT(name) __attribute__((export_name(name)))

static u8 arena[256 * 1024] __attribute__((aligned(16)));
static u32 arena_used;

/* The configured peers, lowercase, each followed by a NUL. */
static u8 peers[16 * 1024];
static u32 peers_len;

/* Return area: discriminant (or pointer), pointer, length. */
static u32 ret[3];

static void copy(u8 *dst, const u8 *src, u32 n) {
    for (u32 i = 0; i < n; i++) dst[i] = src[i];
}

static u8 lower(u8 c) { return (c >= 'A' && c <= 'Z') ? (u8)(c + 32) : c; }

static u32 length(const char *s) {
    u32 n = 0;
    while (s[n]) n++;
    return n;
}

EXPORT("cabi_realloc")
void *cabi_realloc(void *old, u32 old_len, u32 align, u32 new_len) {
    u32 start = (arena_used + align - 1) & ~(align - 1);
    if (start > sizeof arena || new_len > sizeof arena - start) __builtin_trap();
    u8 *p = arena + start;
    arena_used = start + new_len;
    if (old) copy(p, (const u8 *)old, old_len < new_len ? old_len : new_len);
    return p;
}

static u8 *alloc(u32 n) { return (u8 *)cabi_realloc(0, 0, 1, n); }

static const char VERSION[] = "0.1.0";

EXPORT("interface-version")
u32 *interface_version(void) {
    ret[0] = (u32)VERSION;
    ret[1] = sizeof VERSION - 1;
    return ret;
}

static const char NO_PEERS[] = "set peers = \"a.example, b.example\"";
static const char TOO_MANY[] = "peers: too long";

static u32 *fail(const char *msg) {
    ret[0] = 1;
    ret[1] = (u32)msg;
    ret[2] = length(msg);
    return ret;
}

/* init: func(config: list<tuple<string, string>>) -> result<_, string> */
EXPORT("init")
u32 *init(const u32 *entries, u32 count) {
    peers_len = 0;
    for (u32 i = 0; i < count; i++) {
        const u8 *key = (const u8 *)entries[4 * i];
        u32 key_len = entries[4 * i + 1];
        const u8 *value = (const u8 *)entries[4 * i + 2];
        u32 value_len = entries[4 * i + 3];
        if (key_len != 5 || key[0] != 'p' || key[1] != 'e' || key[2] != 'e' || key[3] != 'r' ||
            key[4] != 's')
            continue;
        /* Split on commas, trim spaces, store lowercase and NUL-terminated. */
        u32 start = 0;
        while (start <= value_len) {
            u32 end = start;
            while (end < value_len && value[end] != ',') end++;
            u32 a = start, b = end;
            while (a < b && value[a] == ' ') a++;
            while (b > a && value[b - 1] == ' ') b--;
            if (b > a) {
                if (peers_len + (b - a) + 1 > sizeof peers) return fail(TOO_MANY);
                for (u32 j = a; j < b; j++) peers[peers_len++] = lower(value[j]);
                peers[peers_len++] = 0;
            }
            start = end + 1;
        }
    }
    if (peers_len == 0) return fail(NO_PEERS);
    ret[0] = 0;
    return ret;
}

EXPORT("cabi_post_init")
void post_init(u32 *r) { (void)r; arena_used = 0; }

static int listed(const u8 *peer, u32 len) {
    u32 i = 0;
    while (i < peers_len) {
        u32 n = length((const char *)peers + i);
        if (n == len) {
            u32 j = 0;
            while (j < n && peers[i + j] == lower(peer[j])) j++;
            if (j == n) return 1;
        }
        i += n + 1;
    }
    return 0;
}

static const char NOT_LISTED[] = " is not on the allowlist (c-allowlist)";

/* decide: func(peer: string, direction: direction) -> decision */
EXPORT("siren:plugin/federation-policy@0.1.0#decide")
u32 *decide(const u8 *peer, u32 len, u32 direction) {
    (void)direction;
    if (listed(peer, len)) {
        ret[0] = 0; /* allow */
        return ret;
    }
    u32 tail = sizeof NOT_LISTED - 1;
    u8 *reason = alloc(len + tail);
    copy(reason, peer, len);
    copy(reason + len, (const u8 *)NOT_LISTED, tail);
    ret[0] = 1; /* deny(reason) */
    ret[1] = (u32)reason;
    ret[2] = len + tail;
    return ret;
}

EXPORT("cabi_post_siren:plugin/federation-policy@0.1.0#decide")
void post_decide(u32 *r) { (void)r; arena_used = 0; }

EXPORT("cabi_post_interface-version")
void post_interface_version(u32 *r) { (void)r; }
