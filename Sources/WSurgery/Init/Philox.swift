import CPhilox
import Foundation

/// The counter-based generator Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
/// 3", SC 2011; the generator behind TensorFlow's stateless random ops and PyTorch's CUDA generator). A value is a pure function
/// of the key and a 128-bit counter, so element `i` of a new tensor can be drawn without drawing the
/// elements before it: a tensor produced in blocks of any size has the same bytes. The rounds run in C
/// (`CPhilox`), where the compiler vectorises them across counters.
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
    public func block(_ counter: (UInt32, UInt32, UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
        var words = [UInt32](repeating: 0, count: 4)
        let position = UInt64(counter.0) | UInt64(counter.1) << 32
        words.withUnsafeMutableBufferPointer { wsurgery_philox_blocks(key.0, key.1, position, counter.2, counter.3, 1, $0.baseAddress!) }
        return (words[0], words[1], words[2], words[3])
    }

    /// Two 32-bit words as a uniform number in (0, 1) with 53 random bits.
    @inline(__always)
    static func open53(_ high: UInt32, _ low: UInt32) -> Double {
        (Double((UInt64(high) << 21) ^ (UInt64(low) >> 11)) + 0.5) * 0x1.0p-53
    }

    /// Uniform values in (`low`, `high`) for the elements `start ..< start + out.count`: element `i` is word
    /// `i % 4` of the block at counter (i / 4, 0, 0), as `low + (high - low) * (word + 0.5) / 2^32`.
    public func uniform(into out: UnsafeMutableBufferPointer<Double>, start: Int, low: Double, high: Double) {
        guard let base = out.baseAddress else { return }
        wsurgery_philox_uniform(key.0, key.1, UInt64(start), out.count, low, high - low, base)
    }

    /// Standard normal values (Box-Muller) for the elements `start ..< start + out.count`: element `i` from
    /// the block at counter (i, 0, 1); with `limit`, an element beyond ±`limit` is drawn again from the
    /// blocks (i, 1, 1), (i, 2, 1), ... until it falls inside (a truncated normal).
    public func normal(into out: UnsafeMutableBufferPointer<Double>, start: Int, limit: Double? = nil) {
        let tile = 256
        var words = [UInt32](repeating: 0, count: 4 * tile)
        var first = 0
        while first < out.count {
            let n = min(tile, out.count - first)
            words.withUnsafeMutableBufferPointer { wsurgery_philox_blocks(key.0, key.1, UInt64(start + first), 0, 1, n, $0.baseAddress!) }
            for i in 0..<n {
                let value = Philox.boxMuller(words[4 * i], words[4 * i + 1], words[4 * i + 2], words[4 * i + 3])
                if let limit, abs(value) > limit {
                    out[first + i] = redrawn(position: start + first + i, limit: limit)
                } else {
                    out[first + i] = value
                }
            }
            first += n
        }
    }

    /// Box-Muller's first value from four words.
    @inline(__always)
    static func boxMuller(_ a: UInt32, _ b: UInt32, _ c: UInt32, _ d: UInt32) -> Double {
        (-2 * log(open53(a, b))).squareRoot() * cos(2 * Double.pi * open53(c, d))
    }

    /// A truncated normal element whose first draw fell outside ±`limit`, drawn again until it is inside.
    func redrawn(position: Int, limit: Double) -> Double {
        var draw: UInt32 = 1
        while true {
            let w = block((UInt32(truncatingIfNeeded: position), UInt32(truncatingIfNeeded: position >> 32), draw, 1))
            let value = Philox.boxMuller(w.0, w.1, w.2, w.3)
            if abs(value) <= limit || draw == UInt32.max { return value }
            draw += 1
        }
    }
}
