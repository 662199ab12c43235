#!/usr/bin/env bash
# Builds the statically linked swiftlet binary (Swift runtime inside; needs only libc, libm,
# libstdc++ and libgcc_s) into bench/bin/, a git-ignored folder that travels to the GPU machine
# (name it in the device tool's `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib --scratch-path .build-static
mkdir -p bench/bin
cp .build-static/release/swiftlet bench/bin/swiftlet
ls -la bench/bin/swiftlet
