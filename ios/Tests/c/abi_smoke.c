/* The C ABI under the Swift bindings, called once end to end without Swift (which this Linux CI
 * lacks): the uniffi contract version, then `version()` through the exported symbol, its
 * RustBuffer read as UTF-8 and handed back to Rust to free.
 * Usage: abi_smoke <expected version> <expected contract version> */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "SlowFastFFI.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s <expected version> <expected contract version>\n", argv[0]);
        return 2;
    }
    uint32_t contract = ffi_slowfast_ffi_uniffi_contract_version();
    if (contract != (uint32_t)strtoul(argv[2], NULL, 10)) {
        fprintf(stderr, "contract version %u, the generated bindings expect %s\n", contract, argv[2]);
        return 1;
    }
    RustCallStatus status = {0};
    RustBuffer v = uniffi_slowfast_ffi_fn_func_version(&status);
    if (status.code != 0) {
        fprintf(stderr, "version() failed with call status %d\n", status.code);
        return 1;
    }
    int ok = v.len == strlen(argv[1]) && memcmp(v.data, argv[1], v.len) == 0;
    printf("C ABI: contract %u, version() = \"%.*s\"\n", contract, (int)v.len, (const char *)v.data);
    ffi_slowfast_ffi_rustbuffer_free(v, &status);
    if (status.code != 0) {
        fprintf(stderr, "rustbuffer_free failed with call status %d\n", status.code);
        return 1;
    }
    return ok ? 0 : 1;
}
