// swift-tools-version:5.9
// The Swift SDK. Build the XCFramework first (on a Mac with the iOS
// targets): `bash mobile/swift/build-xcframework.sh`. Untested: these
// machines have no Swift toolchain (see docs/mobile.md).
import PackageDescription

let package = Package(
    name: "SpkeyStore",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [.library(name: "SpkeyStore", targets: ["SpkeyStore"])],
    targets: [
        .binaryTarget(name: "SpkeyStoreFFIFFI", path: "build/SpkeyStoreFFIFFI.xcframework"),
        // The UniFFI-generated Swift, copied here by build-xcframework.sh.
        .target(name: "SpkeyStoreFFI", dependencies: ["SpkeyStoreFFIFFI"], path: "build/Sources/SpkeyStoreFFI"),
        .target(name: "SpkeyStore", dependencies: ["SpkeyStoreFFI"], path: "Sources/SpkeyStore"),
    ]
)
