#include "cphilox.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

// Counters are processed a tile at a time, each output word into its own array: the iterations are
// independent and the stores unit-stride, so the compiler vectorises the rounds across counters.
#define TILE 64

static void philox_tile(uint32_t key0, uint32_t key1, uint64_t first, uint32_t draw, uint32_t domain, size_t count,
                        uint32_t *restrict w0, uint32_t *restrict w1, uint32_t *restrict w2, uint32_t *restrict w3) {
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
        w0[i] = c0;
        w1[i] = c1;
        w2[i] = c2;
        w3[i] = c3;
    }
}

void wsurgery_philox_blocks(uint32_t key0, uint32_t key1, uint64_t first, uint32_t draw, uint32_t domain, size_t count, uint32_t *out) {
    uint32_t w[4][TILE];
    for (size_t done = 0; done < count; done += TILE) {
        size_t n = count - done < TILE ? count - done : TILE;
        philox_tile(key0, key1, first + done, draw, domain, n, w[0], w[1], w[2], w[3]);
        for (size_t i = 0; i < n; i++) {
            for (int k = 0; k < 4; k++) out[4 * (done + i) + k] = w[k][i];
        }
    }
}

void wsurgery_philox_uniform(uint32_t key0, uint32_t key1, uint64_t start, size_t count, double low, double width, double *out) {
    uint32_t w[4][TILE];
    const double scale = width * 0x1.0p-32;
    const double base = low + 0.5 * scale;
    size_t done = 0;
    while (done < count) {
        uint64_t element = start + done;
        size_t skip = (size_t)(element % 4);
        size_t available = 4 * TILE - skip;
        size_t n = count - done < available ? count - done : available;
        philox_tile(key0, key1, element / 4, 0, 0, (skip + n + 3) / 4, w[0], w[1], w[2], w[3]);
        if (skip == 0 && n == 4 * TILE) {
            for (size_t i = 0; i < TILE; i++) {
                for (int k = 0; k < 4; k++) out[done + 4 * i + k] = base + scale * (double)w[k][i];
            }
        } else {
            for (size_t j = 0; j < n; j++) {
                size_t word = skip + j;
                out[done + j] = base + scale * (double)w[word % 4][word / 4];
            }
        }
        done += n;
    }
}
