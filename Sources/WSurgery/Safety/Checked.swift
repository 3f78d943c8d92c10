/// Arithmetic on sizes that come from files, configs or the command line. A negative value or an
/// overflow gives nil, never a trap: a hostile shape must become an error naming the file, not a crash.
public enum Checked {
    /// The largest element count or byte count accepted anywhere (2^60): room to multiply by an element
    /// size of up to 8 bytes and add offsets without overflowing 64 bits.
    public static let maxCount = 1 << 60

    /// The product of `values`, or nil when one is negative or the product exceeds `maxCount`.
    public static func product<S: Sequence>(_ values: S) -> Int? where S.Element == Int {
        var total = 1
        for value in values {
            guard value >= 0 else { return nil }
            let (product, overflow) = total.multipliedReportingOverflow(by: value)
            guard !overflow, product <= maxCount else { return nil }
            total = product
        }
        return total
    }

    /// `a * b`, or nil on a negative operand or a result above `maxCount`.
    public static func multiply(_ a: Int, _ b: Int) -> Int? { product([a, b]) }

    /// `a + b`, or nil on a negative operand or a result above `maxCount`.
    public static func add(_ a: Int, _ b: Int) -> Int? {
        guard a >= 0, b >= 0 else { return nil }
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow || sum > maxCount ? nil : sum
    }

    /// The element count of `shape`, or the error `fail` builds naming it.
    public static func elementCount(_ shape: [Int], or fail: (String) -> WSurgeryError) throws -> Int {
        guard let count = product(shape) else {
            throw fail("the shape \(ShapeText.python(shape.map { Optional($0) })) has a negative dimension or more than 2^60 elements")
        }
        return count
    }
}
