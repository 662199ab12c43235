#!/usr/bin/env bash
# Builds the statically linked swiftlet binary (Swift runtime inside; needs only libc, libm,
# libstdc++ and libgcc_s) into bench/bin/, a git-ignored folder that travels to the GPU machine
# (name it in the device tool's `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib --scratch-path .build-static
mkdir -p bench/bin
# Stripped and xz-compressed: Foundation's ICU data makes the binary ~60 MB, and the device
# tool carries at most 64 MiB. bench/run.sh unpacks it.
strip -o bench/bin/swiftlet .build-static/release/swiftlet
xz -T0 -6 -f bench/bin/swiftlet
ls -la bench/bin/
