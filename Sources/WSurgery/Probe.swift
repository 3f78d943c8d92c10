import CHDF5
import ZIPFoundation
public func hdf5Version() -> String {
    var a: UInt32 = 0, b: UInt32 = 0, c: UInt32 = 0
    _ = wsh5_init(); _ = H5get_libversion(&a, &b, &c); return "\(a).\(b).\(c)"
}
