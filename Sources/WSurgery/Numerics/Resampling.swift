import Foundation

/// Resizing a grid of values along one axis with a separable filter, the way Pillow and PyTorch's
/// `F.interpolate(..., align_corners=False)` do: output sample `j` sits at input position
/// `(j + 0.5) * in/out - 0.5`, the filter's weights over the input samples in reach are normalised to sum
/// to 1, and samples beyond the border are left out. With `antialias` the filter is widened by the
/// reduction factor when shrinking (Pillow; PyTorch with `antialias=True`), otherwise it keeps its width
/// (PyTorch's default `bilinear`).
public enum Resampling {
    /// The interpolation kernel.
    public enum Filter: String, Sendable {
        /// The triangle filter of bilinear interpolation.
        case linear
        /// The cubic convolution filter with a = -0.5 (Pillow's and PyTorch's antialiased bicubic).
        case cubic

        var support: Double { self == .linear ? 1 : 2 }

        func weight(_ x: Double) -> Double {
            let x = abs(x)
            switch self {
            case .linear: return x < 1 ? 1 - x : 0
            case .cubic:
                let a = -0.5
                if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
                if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
                return 0
            }
        }
    }

    /// The `outSize` x `inSize` matrix mapping `inSize` samples to `outSize` samples.
    public static func matrix(from inSize: Int, to outSize: Int, filter: Filter, antialias: Bool) -> [[Double]] {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = antialias ? max(scale, 1) : 1
        let support = filter.support * filterScale
        return (0..<outSize).map { j in
            let center = (Double(j) + 0.5) * scale
            let first = max(Int((center - support + 0.5).rounded(.towardZero)), 0)
            let last = min(Int((center + support + 0.5).rounded(.towardZero)), inSize)
            var row = [Double](repeating: 0, count: inSize)
            var total = 0.0
            for i in first..<max(first, last) {
                let w = filter.weight((Double(i) - center + 0.5) / filterScale)
                row[i] = w
                total += w
            }
            if total != 0 { for i in first..<max(first, last) { row[i] /= total } }
            return row
        }
    }

    /// `values` resized along `axes` to `sizes` (one filter pass per axis).
    public static func resize(_ values: ValueArray, axes: [Int], to sizes: [Int], filter: Filter, antialias: Bool) -> ValueArray {
        var result = values
        for (axis, size) in zip(axes, sizes) where result.shape[axis] != size {
            result = result.mapped(along: axis, by: matrix(from: result.shape[axis], to: size, filter: filter, antialias: antialias))
        }
        return result
    }
}
