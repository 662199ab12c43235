# Sourced by the bench scripts, from the repository root: the carried binary unpacked once
# (bench/build.sh xz-compresses it to fit the device tool's 64 MiB carry), and bitsandbytes on
# PYTHONPATH when bench/carry/bnb was carried (../shared/bench/get-bitsandbytes.sh).
swiftlet=bench/bin/swiftlet
[ -x $swiftlet ] || python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('$swiftlet.xz'), open('$swiftlet', 'wb'))"
chmod +x $swiftlet
if [ -d bench/carry/bnb/site ]; then
    export PYTHONPATH="$PWD/bench/carry/bnb/site${PYTHONPATH:+:$PYTHONPATH}"
fi
