#!/usr/bin/env bash
# The main job: installs what is missing, builds the `pickscore` command (Release, in build/) and
# runs `pickscore demo`, the offline end-to-end demonstration: it fine-tunes a small CLIP on a
# preference set it draws itself, then scores and ranks held-out images with pickscore::Scorer and
# prints the held-out accuracy (about a minute on 2 cores). Arguments go to the demo, e.g.
#     scripts/run.sh --steps 400 --out demo-run
# (`pickscore demo --help` lists them). The build directory can be changed with PICKSCORE_BUILD_DIR.
#
# The demo needs CLIP's tokenizer vocabulary, bpe_simple_vocab_16e6.txt.gz. It is taken from
# $PICKSCORE_VOCAB, ../shared/data/ (beside the checkout) or the build's examples/ folder when there;
# otherwise this script fetches it once from the open_clip_torch wheel on PyPI (pip download, no
# install) into the build's examples/ folder, beside the executable, and checks its SHA-256.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${PICKSCORE_BUILD_DIR:-build}
vocab_name=bpe_simple_vocab_16e6.txt.gz
vocab_sha256=924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a
open_clip_version=3.3.0

scripts/setup.sh
cmake --preset release -B "$build" >/dev/null
cmake --build "$build" -j "$(nproc)" --target pickscore_cli

if [[ -z "${PICKSCORE_VOCAB:-}" && ! -f "../shared/data/$vocab_name" && ! -f "$build/examples/$vocab_name" ]]; then
    echo "run.sh: fetching $vocab_name from open_clip_torch $open_clip_version on PyPI"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "open_clip_torch==$open_clip_version"
    python3 - "$tmp" "$vocab_name" <<'EOF'
import glob, sys, zipfile
tmp, name = sys.argv[1], sys.argv[2]
wheel = glob.glob(f"{tmp}/open_clip_torch-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(f"{tmp}/{name}", "wb") as out:
    out.write(z.read(f"open_clip/{name}"))
EOF
    echo "$vocab_sha256  $tmp/$vocab_name" | sha256sum --check --quiet
    cp "$tmp/$vocab_name" "$build/examples/$vocab_name"
fi

"$build/examples/pickscore" demo "$@"
