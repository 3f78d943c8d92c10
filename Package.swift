// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "wsurgery",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "WSurgery", targets: ["WSurgery"]),
        .executable(name: "wsurgery", targets: ["wsurgery"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // libhdf5 through pkg-config `hdf5`; the shim wraps the macros Swift cannot import.
        .systemLibrary(
            name: "CHDF5",
            pkgConfig: "hdf5",
            providers: [.apt(["libhdf5-dev"]), .brew(["hdf5"])]
        ),
        // XXH3-128 through pkg-config `libxxhash` (Debian libxxhash-dev): the default input digest.
        .systemLibrary(
            name: "CXXHash",
            pkgConfig: "libxxhash",
            providers: [.apt(["libxxhash-dev"]), .brew(["xxhash"])]
        ),
        // copy_file_range(2), which Swift cannot see behind _GNU_SOURCE.
        .target(name: "CFileCopy"),
        // SHA-256 blocks with the x86 SHA extensions (the input digest of every output).
        .target(name: "CSHA256"),
        // Philox4x32-10 counter-based random blocks, vectorised by the C compiler (new weights).
        .target(name: "CPhilox"),
        // An HDF5 file driver over a descriptor, so libhdf5 can work on unnamed (O_TMPFILE) files.
        .target(name: "CHDF5Descriptor", dependencies: ["CHDF5"]),
        // Signal handlers that remove temporary files, and unnamed (O_TMPFILE) outputs.
        .target(name: "CProcessGuard"),
        .target(
            name: "WSurgery",
            dependencies: [
                "CHDF5",
                "CXXHash",
                "CFileCopy",
                "CSHA256",
                "CPhilox",
                "CProcessGuard",
                "CHDF5Descriptor",
                .product(name: "ZIPFoundation", package: "ZIPFoundation"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "wsurgery",
            dependencies: [
                "WSurgery",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "WSurgeryTests", dependencies: ["WSurgery"]),
        .testTarget(
            name: "wsurgeryCLITests",
            dependencies: ["wsurgery", "WSurgery", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
    ]
)
