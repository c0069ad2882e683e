/* libFuzzer target: the tuning-database JSON-lines importer
 * (tuning_db/db.c, `spattn db import`).  One database in a temporary
 * directory for the whole run, emptied every 1000 inputs; any input must be
 * imported or its lines rejected one by one, never crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tuning_db/db.h"

static void ignore(void *ctx, int line, const char *msg) { (void)ctx; (void)line; (void)msg; }

static db *fuzz_db;
static char fuzz_dir[] = "/tmp/spattn-fuzz-db-XXXXXX";

/* At exit: close the database and remove its directory. */
static void fuzz_db_cleanup(void)
{
    static const char *const files[] = { "tune.db", "tune.db-wal", "tune.db-shm", "tune.db-journal" };
    db_close(fuzz_db);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[96];
        snprintf(path, sizeof path, "%s/%s", fuzz_dir, files[i]);
        unlink(path);
    }
    rmdir(fuzz_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int n;
    db *d = fuzz_db;
    if (!d) {
        char path[64];
        if (!mkdtemp(fuzz_dir)) return 0;
        snprintf(path, sizeof path, "%s/tune.db", fuzz_dir);
        sp_err e = { 0 };
        if (db_open(path, 0, &fuzz_db, &e)) return 0;
        d = fuzz_db;
        atexit(fuzz_db_cleanup);
    }
    int imported = 0, rejected = 0, removed;
    sp_err e = { 0 };
    db_import_jsonl(d, (const char *)data, size, ignore, NULL, &imported, &rejected, &e);
    if (++n % 1000 == 0) db_clear(d, &removed, &e);
    return 0;
}
