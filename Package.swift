// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Swiftlet",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Swiftlet", targets: ["Swiftlet"]),
        .executable(name: "swiftlet", targets: ["swiftlet"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
    ],
    targets: [
        // C declarations of the CUDA entry points we call, resolved with dlopen at run time
        // (filled by the CUDA backend); no CUDA SDK is needed to build.
        .target(name: "CCUDA"),
        .target(
            name: "Swiftlet",
            dependencies: [
                "CCUDA",
                .product(name: "Numerics", package: "swift-numerics"),
            ]),
        .executableTarget(
            name: "swiftlet",
            dependencies: [
                "Swiftlet",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ]),
        .testTarget(
            name: "SwiftletTests",
            dependencies: ["Swiftlet"],
            resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v5]
)
