#ifndef WSURGERY_CPHILOX_H
#define WSURGERY_CPHILOX_H
#include <stddef.h>
#include <stdint.h>

/// Philox4x32-10 (Salmon et al., SC 2011) for `count` consecutive counters: counter i is
/// (low and high 32 bits of first + i, draw, domain); its four words go to out[4i ... 4i + 3].
void wsurgery_philox_blocks(uint32_t key0, uint32_t key1, uint64_t first, uint32_t draw, uint32_t domain, size_t count, uint32_t *out);

/// Uniform values in (low, low + width) for the elements start ... start + count - 1 of a stream: element e
/// is word e % 4 of the block at counter (e / 4, 0, 0), mapped as low + width * (word + 0.5) / 2^32.
void wsurgery_philox_uniform(uint32_t key0, uint32_t key1, uint64_t start, size_t count, double low, double width, double *out);
#endif
