// The SHA-256 block function: with the x86 SHA extensions (SHA-NI) when the CPU has them, about 5x the
// portable rounds, so the input digest recorded in every output costs little next to copying the file.
#include "csha256.h"

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/// The FIPS 180-4 rounds in plain C, for CPUs without the SHA extensions.
static void sha256_portable_blocks(uint32_t state[8], const uint8_t *data, size_t blocks) {
    for (; blocks > 0; blocks--, data += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++) {
            w[i] = (uint32_t)data[4 * i] << 24 | (uint32_t)data[4 * i + 1] << 16 | (uint32_t)data[4 * i + 2] << 8 | data[4 * i + 3];
        }
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4], f = state[5], g = state[6], h = state[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
            uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
        }
        state[0] += a; state[1] += b; state[2] += c; state[3] += d; state[4] += e; state[5] += f; state[6] += g; state[7] += h;
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>


int wsurgery_sha256_hw_available(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int sha = (b >> 29) & 1;
    return ssse3 && sse41 && sha;
}

__attribute__((target("sha,sse4.1,ssse3")))
static void sha256_hw_blocks(uint32_t state[8], const uint8_t *data, size_t blocks) {
    // The SHA instructions keep the state as (A, B, E, F) and (C, D, G, H).
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1); // C D A B
    __m128i state1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B); // E F G H
    __m128i state0 = _mm_alignr_epi8(tmp, state1, 8);      // A B E F
    state1 = _mm_blend_epi16(state1, tmp, 0xF0);          // C D G H

    for (; blocks > 0; blocks--, data += 64) {
        const __m128i save0 = state0, save1 = state1;
        __m128i w[16];
        for (int j = 0; j < 16; j++) {
            if (j < 4) {
                w[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * j)), byteswap);
            } else {
                // W[t] = W[t-16] + s0(W[t-15]) + W[t-7] + s1(W[t-2]), four words at a time.
                __m128i t = _mm_sha256msg1_epu32(w[j - 4], w[j - 3]);
                t = _mm_add_epi32(t, _mm_alignr_epi8(w[j - 1], w[j - 2], 4));
                w[j] = _mm_sha256msg2_epu32(t, w[j - 1]);
            }
            __m128i msg = _mm_add_epi32(w[j], _mm_loadu_si128((const __m128i *)&K[4 * j]));
            state1 = _mm_sha256rnds2_epu32(state1, state0, msg);
            state0 = _mm_sha256rnds2_epu32(state0, state1, _mm_shuffle_epi32(msg, 0x0E));
        }
        state0 = _mm_add_epi32(state0, save0);
        state1 = _mm_add_epi32(state1, save1);
    }

    tmp = _mm_shuffle_epi32(state0, 0x1B);       // F E B A
    state1 = _mm_shuffle_epi32(state1, 0xB1);    // D C H G
    state0 = _mm_blend_epi16(tmp, state1, 0xF0); // D C B A
    state1 = _mm_alignr_epi8(state1, tmp, 8);    // H G F E
    _mm_storeu_si128((__m128i *)&state[0], state0);
    _mm_storeu_si128((__m128i *)&state[4], state1);
}

void wsurgery_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks) {
    static int hardware = -1;
    if (hardware < 0) hardware = wsurgery_sha256_hw_available();
    if (hardware) sha256_hw_blocks(state, data, blocks); else sha256_portable_blocks(state, data, blocks);
}

#else

int wsurgery_sha256_hw_available(void) { return 0; }
void wsurgery_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks) { sha256_portable_blocks(state, data, blocks); }

#endif
