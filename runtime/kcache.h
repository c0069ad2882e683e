/* The on-disk cache of compiled kernels: NVRTC takes 0.2 to 2 s per kernel,
 * so every cubin is kept, keyed by what determines it.
 *
 * Directory: $SPATTN_CACHE_DIR, else $XDG_CACHE_HOME/spattn/kernels, else
 * $HOME/.cache/spattn/kernels (created on first store).
 *
 * Key: XXH3-128 of (format salt, spattn version, arch, NVRTC version,
 * source), as 32 lowercase hex digits; the source is the generated
 * translation unit with the kernels/x.cuh files it includes pasted in
 * (kernel_sources_flatten) and its comments left out.  Not the driver version: NVRTC does
 * not consult the driver, so a cubin for an sm is the same bytes whatever
 * driver (or none) is installed, and `spattn compile --arch sm_90a` on a
 * machine without a GPU stores the entry that `run` on an H100 looks up.
 * Entry: <key>.cubin,
 *
 *     offset  size  field
 *          0     8  magic "SPATTNK1"
 *          8     4  format version (1)
 *         12     4  header bytes (256)
 *         16     8  XXH64 (seed 0) of every byte from offset 24 to the end
 *         24     8  cubin bytes
 *         32     8  compile log bytes
 *         40     4  NVRTC version (13000)
 *         44     4  driver version of the writer (0 without a GPU; not in the key)
 *         48    32  key (hex, must match the file name)
 *         80    16  arch ("sm_90a"), NUL-padded
 *         96   160  label (kernel name(s), for `spattn cache list`), NUL-padded
 *        256     -  cubin, then the compile log (no NUL)
 *
 * integers little-endian.  Entries are written with sp_write_file_atomic
 * (temp file + rename), so a reader sees a whole entry or none, and two
 * processes compiling the same kernel at once both succeed (the last rename
 * wins; both entries are identical).  An entry that fails any check (size,
 * magic, version, key, hash) is removed and rebuilt: garbage never crashes. */
#ifndef SPATTN_KCACHE_H
#define SPATTN_KCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/err.h"
#include "runtime/nvrtc.h"

#define KCACHE_KEY_LEN      32
#define KCACHE_HEADER_BYTES 256
#define KCACHE_LABEL_MAX    160
#define KCACHE_ARCH_MAX     16

/* How kcache_get got its result. */
typedef struct {
    int hit;            /* 1: read from the cache; 0: compiled now */
    int rebuilt;        /* 1: a damaged entry was found, removed and rebuilt */
    int store_failed;   /* 1: compiled, but the entry could not be written
                           (the result is still good; `why` says what failed,
                           for a warning line) */
    char key[KCACHE_KEY_LEN + 1];
    char why[640];
} kcache_info;

/* The cache directory (not created here).  -1 (SP_EXIT_USAGE) if none of
 * SPATTN_CACHE_DIR, XDG_CACHE_HOME, HOME is set or the path is too long. */
int kcache_dir(char *buf, size_t n, sp_err *e);

/* The key of a compile (32 hex digits + NUL into out). */
void kcache_key(const char *src, const char *arch, int nvrtc_version, char out[KCACHE_KEY_LEN + 1]);

/* The cubin of src for arch: from the cache, else compiled with nvrtc_compile
 * and stored.  driver_version: sp_gpu.driver_version, or 0 without a GPU;
 * only recorded in the entry's header (shown by `cache list`), not keyed.
 * label: the kernel name(s), shown by `cache list` (truncated to 159 bytes;
 * NULL = "").  On success out holds the cubin and log (free with
 * nvrtc_compiled_free) and info (may be NULL) says how.  Fails only when the
 * compile fails (out->log then holds the whole log) or memory runs out; a
 * cache directory that cannot be created or written only sets
 * info->store_failed. */
int kcache_get(const char *src, const char *arch, int driver_version, const char *label,
               sp_compiled *out, kcache_info *info, sp_err *e);

/* One entry as `cache list` shows it. */
typedef struct {
    char key[KCACHE_KEY_LEN + 1];
    char label[KCACHE_LABEL_MAX];
    char arch[KCACHE_ARCH_MAX];
    int nvrtc_version, driver_version;
    size_t bytes;       /* file size */
    time_t mtime;
    int valid;          /* header and size check out (the hash is checked on use) */
} kcache_entry;

/* Entries of dir (NULL: kcache_dir), newest first, in *out (caller frees);
 * files whose names are not <32 hex>.cubin are ignored.  A missing
 * directory is an empty cache.  Errors: SP_EXIT_FAIL (unreadable dir). */
int kcache_list(const char *dir, kcache_entry **out, int *n, sp_err *e);
/* Remove every entry of dir (NULL: kcache_dir) and leftover temp files of
 * interrupted writes; other files are left alone.  *removed = entries
 * removed.  A missing directory removes 0. */
int kcache_clear(const char *dir, int *removed, sp_err *e);

#endif
