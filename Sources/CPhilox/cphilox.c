#include "cphilox.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

// The counters of a tile are independent, so the compiler vectorises the loop over them.
#define TILE 64

void wsurgery_philox_blocks(uint32_t key0, uint32_t key1, uint64_t first, uint32_t draw, uint32_t domain, size_t count, uint32_t *out) {
    for (size_t i = 0; i < count; i++) {
        uint64_t position = first + i;
        uint32_t c0 = (uint32_t)position, c1 = (uint32_t)(position >> 32), c2 = draw, c3 = domain;
        uint32_t k0 = key0, k1 = key1;
        for (int round = 0; round < 10; round++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
            uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
            c1 = (uint32_t)p1;
            c3 = (uint32_t)p0;
            c0 = n0;
            c2 = n2;
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        out[4 * i] = c0;
        out[4 * i + 1] = c1;
        out[4 * i + 2] = c2;
        out[4 * i + 3] = c3;
    }
}

void wsurgery_philox_uniform(uint32_t key0, uint32_t key1, uint64_t start, size_t count, double low, double width, double *out) {
    uint32_t words[4 * TILE];
    const double scale = width * 0x1.0p-32;
    const double base = low + 0.5 * scale;
    size_t done = 0;
    while (done < count) {
        uint64_t element = start + done;
        uint64_t block = element / 4;
        size_t skip = (size_t)(element % 4);
        size_t available = 4 * TILE - skip;
        size_t n = count - done < available ? count - done : available;
        size_t blocks = (skip + n + 3) / 4;
        wsurgery_philox_blocks(key0, key1, block, 0, 0, blocks, words);
        for (size_t i = 0; i < n; i++) out[done + i] = base + scale * (double)words[skip + i];
        done += n;
    }
}
