# Sourced by the bench scripts, from the repository root: the carried binary unpacked once
# (bench/build.sh xz-compresses it to fit the device tool's 64 MiB carry), and bitsandbytes on
# PYTHONPATH when bench/carry/bnb was carried (../shared/bench/get-bitsandbytes.sh).
swiftlet=bench/bin/swiftlet
[ -x $swiftlet ] || python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('$swiftlet.xz'), open('$swiftlet', 'wb'))"
chmod +x $swiftlet
if [ -d bench/carry/bnb/site ]; then
    export PYTHONPATH="$PWD/bench/carry/bnb/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# Which card ran it (H100 and H200 calls both happen; a ratio holds only within one call), said once per call.
if [ -z "${SWIFTLET_GPU_SAID:-}" ]; then
    echo "GPU: $(nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null | head -1)"
    export SWIFTLET_GPU_SAID=1
fi
