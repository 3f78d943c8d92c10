#ifndef WSURGERY_CSHA256_H
#define WSURGERY_CSHA256_H

#include <stddef.h>
#include <stdint.h>

/// Whether this CPU has the x86 SHA extensions (and SSSE3/SSE4.1, which the block function also uses).
int wsurgery_sha256_hw_available(void);

/// Runs the SHA-256 compression over `blocks` 64-byte blocks, updating `state` (a, b, ..., h): with the
/// SHA extensions when available, else portable C.
void wsurgery_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks);

#endif
