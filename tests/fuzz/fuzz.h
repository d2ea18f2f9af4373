/* The libFuzzer entry point every harness in tests/fuzz defines. Built with -fsanitize=fuzzer
 * it is driven by libFuzzer; otherwise fuzz_replay.c's main() runs it over a seed corpus. */
#ifndef BH_FUZZ_H
#define BH_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
