import Foundation

/// The counter-based generator Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
/// 3", SC 2011; the generator behind PyTorch's CUDA and JAX's random streams). A value is a pure function
/// of the key and a 128-bit counter, so element `i` of a new tensor can be drawn without drawing the
/// elements before it: a tensor produced in blocks of any size has the same bytes.
public struct Philox: Sendable, Equatable {
    /// The 64-bit key.
    public let key: (UInt32, UInt32)

    /// A generator with the key `key`.
    public init(key: (UInt32, UInt32)) { self.key = key }

    /// The stream of one tensor: the user's seed mixed with the FNV-1a hash of the tensor's name through
    /// SplitMix64, so tensors get independent streams and the order they are drawn in does not matter.
    public init(seed: UInt64, stream name: String) {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        var z = (seed ^ hash) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        self.init(key: (UInt32(truncatingIfNeeded: z), UInt32(truncatingIfNeeded: z >> 32)))
    }

    /// Same key, same stream.
    public static func == (a: Philox, b: Philox) -> Bool { a.key == b.key }

    /// The four 32-bit words for `counter` (ten rounds).
    @inline(__always)
    public func block(_ counter: (UInt32, UInt32, UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for round in 0..<10 {
            if round > 0 {
                k0 &+= 0x9E37_79B9
                k1 &+= 0xBB67_AE85
            }
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            (c0, c1, c2, c3) = (
                UInt32(truncatingIfNeeded: p1 >> 32) ^ c1 ^ k0, UInt32(truncatingIfNeeded: p1),
                UInt32(truncatingIfNeeded: p0 >> 32) ^ c3 ^ k1, UInt32(truncatingIfNeeded: p0)
            )
        }
        return (c0, c1, c2, c3)
    }

    /// The words for a 64-bit position, a draw number (redraws of one element) and a domain tag.
    @inline(__always)
    func block(position: UInt64, draw: UInt32 = 0, domain: UInt32 = 0) -> (UInt32, UInt32, UInt32, UInt32) {
        block((UInt32(truncatingIfNeeded: position), UInt32(truncatingIfNeeded: position >> 32), draw, domain))
    }

    @inline(__always)
    static func word(_ words: (UInt32, UInt32, UInt32, UInt32), _ index: Int) -> UInt32 {
        switch index {
        case 0: return words.0
        case 1: return words.1
        case 2: return words.2
        default: return words.3
        }
    }

    /// A 32-bit word as a uniform number in (0, 1).
    @inline(__always)
    static func open32(_ word: UInt32) -> Double { (Double(word) + 0.5) * 0x1.0p-32 }

    /// Two 32-bit words as a uniform number in (0, 1) with 53 random bits.
    @inline(__always)
    static func open53(_ high: UInt32, _ low: UInt32) -> Double {
        (Double((UInt64(high) << 21) ^ (UInt64(low) >> 11)) + 0.5) * 0x1.0p-53
    }

    /// Uniform values in (`low`, `high`) for the elements `start ..< start + out.count`: element `i` is word
    /// `i % 4` of the block at position `i / 4` (32 random bits per value).
    public func uniform(into out: UnsafeMutableBufferPointer<Double>, start: Int, low: Double, high: Double) {
        let width = high - low
        var i = 0
        while i < out.count {
            let element = start + i
            let words = block(position: UInt64(element / 4))
            let first = element % 4
            let take = min(4 - first, out.count - i)
            for j in 0..<take { out[i + j] = low + width * Philox.open32(Philox.word(words, first + j)) }
            i += take
        }
    }

    /// Standard normal values (Box-Muller) for the elements `start ..< start + out.count`, each from its own
    /// block; with `limit`, an element beyond ±`limit` is redrawn from its next block (a truncated normal).
    public func normal(into out: UnsafeMutableBufferPointer<Double>, start: Int, limit: Double? = nil) {
        for i in 0..<out.count {
            var draw: UInt32 = 0
            while true {
                let w = block(position: UInt64(start + i), draw: draw, domain: 1)
                let radius = (-2 * log(Philox.open53(w.0, w.1))).squareRoot()
                let value = radius * cos(2 * Double.pi * Philox.open53(w.2, w.3))
                if let limit, abs(value) > limit, draw < UInt32.max {
                    draw += 1
                    continue
                }
                out[i] = value
                break
            }
        }
    }
}
