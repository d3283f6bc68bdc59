#!/usr/bin/env bash
# Downloads the weights `pickscore score` and `pickscore rank` need from the Hugging Face hub, with
# checksums:
#
#     scripts/get_weights.sh [--model pickscore|clip] [DIR]
#
#   pickscore (default, DIR = weights/PickScore_v1): yuvalkirstain/PickScore_v1's model.safetensors
#             (3.94 GB, float32) and config.json, plus the processor files of
#             laion/CLIP-ViT-H-14-laion2B-s32B-b79K (tokenizer.json, vocab.json, merges.txt,
#             tokenizer_config.json, special_tokens_map.json, preprocessor_config.json), which is
#             what PickScore's own code loads as its processor.
#   clip      (DIR = weights/CLIP-ViT-H-14): the LAION model itself (the paper's zero-shot CLIP-H
#             baseline; score it with --preset clip) and the same processor files.
#
# Then:  pickscore score --model DIR --prompt "..." image.png ...
#
# Checksums: before downloading, the script asks the hub's API for the repository's file list
# (GET $HF_ENDPOINT/api/models/<repo>/tree/<revision>). Large files are Git LFS objects whose entry
# carries "lfs": {"oid": <sha256 of the file>, "size": ...}: the file is checked with sha256sum
# against it. Small files are plain git blobs whose "oid" is the git blob hash (SHA-1 of
# "blob <size>\0" + content): checked the same way `git hash-object` would. The sizes are checked
# too. The verified SHA-256 of every file is written to DIR/SHA256SUMS, so a later
# `(cd DIR && sha256sum -c SHA256SUMS)` or `scripts/get_weights.sh --check DIR` re-checks offline.
# The expected values thus come from the hub at download time (not pinned in this repository):
# they protect against a truncated, corrupted or tampered-with-in-transit download, not against a
# change of the repository itself; pin a revision (PICKSCORE_REVISION) to be safe from the latter.
#
# Downloads resume: a partial file is kept as FILE.part and continued with curl -C - on the next run;
# a file already present and matching its checksum is not downloaded again.
#
# Environment:
#   HF_ENDPOINT         the hub (default https://huggingface.co; a mirror works the same way)
#   HF_TOKEN            sent as a bearer token when set (not needed for these public repositories)
#   PICKSCORE_REVISION  the revision of the model repository (default main)
#
# Needs: bash, curl, sha256sum and sha1sum (coreutils), python3 (to read the API's JSON).
# Exit status: 0 when every file is present and verified; 1 otherwise (the message says which file
# and why); 2 on a usage error.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

model=pickscore
dir=""
check_only=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --model) [[ $# -ge 2 ]] || { echo "get_weights.sh: --model needs pickscore or clip" >&2; exit 2; }
                 model="$2"; shift 2 ;;
        --check) check_only=1; shift ;;
        -*) echo "get_weights.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
        *) [[ -z "$dir" ]] || { echo "get_weights.sh: one DIR only" >&2; exit 2; }
           dir="$1"; shift ;;
    esac
done

endpoint="${HF_ENDPOINT:-https://huggingface.co}"
endpoint="${endpoint%/}"
revision="${PICKSCORE_REVISION:-main}"
clip_repo="laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
processor_files=(tokenizer.json vocab.json merges.txt tokenizer_config.json special_tokens_map.json preprocessor_config.json)
case "$model" in
    pickscore) model_repo="yuvalkirstain/PickScore_v1"; dir="${dir:-weights/PickScore_v1}" ;;
    clip)      model_repo="$clip_repo"; dir="${dir:-weights/CLIP-ViT-H-14}" ;;
    *) echo "get_weights.sh: unknown model '$model' (pickscore or clip)" >&2; exit 2 ;;
esac

die() { echo "get_weights.sh: $*" >&2; exit 1; }

if [[ $check_only -eq 1 ]]; then
    [[ -f "$dir/SHA256SUMS" ]] || die "$dir/SHA256SUMS not found (nothing downloaded there yet?)"
    (cd "$dir" && sha256sum -c SHA256SUMS) || die "checksum mismatch in $dir (rerun without --check to download again)"
    exit 0
fi

for tool in curl sha256sum sha1sum python3; do
    command -v "$tool" >/dev/null 2>&1 || die "needs '$tool' on PATH"
done

curl_args=(--fail --location --silent --show-error --retry 5 --retry-delay 2 --connect-timeout 30)
if [[ -n "${HF_TOKEN:-}" ]]; then curl_args+=(--header "Authorization: Bearer $HF_TOKEN"); fi

mkdir -p "$dir"
sums="$dir/SHA256SUMS"
: > "$sums.tmp"

# expected REPO REV FILE -> prints "<kind> <hash> <size>" (kind: sha256 for LFS files, gitsha1 otherwise)
read_listing='
import json, sys
name, repo = sys.argv[1], sys.argv[2]
for e in json.load(sys.stdin):
    if e.get("path") == name and e.get("type") == "file":
        lfs = e.get("lfs")
        if lfs and lfs.get("oid"):
            oid = lfs["oid"]
            print("sha256", oid[7:] if oid.startswith("sha256:") else oid, lfs.get("size", e.get("size", -1)))
        else:
            print("gitsha1", e["oid"], e.get("size", -1))
        sys.exit(0)
sys.exit("get_weights.sh: " + repo + " has no file " + repr(name) + " in the hub listing")
'
expected() {
    local repo="$1" rev="$2" file="$3" listing
    listing="$(curl "${curl_args[@]}" "$endpoint/api/models/$repo/tree/$rev")" ||
        die "cannot list $repo at $rev from $endpoint (no network? set HF_ENDPOINT for a mirror)"
    python3 -c "$read_listing" "$file" "$repo" <<<"$listing"
}

# verify FILE KIND HASH SIZE -> 0 when the file matches
verify() {
    local file="$1" kind="$2" hash="$3" size="$4" actual_size got
    [[ -f "$file" ]] || return 1
    actual_size=$(stat -c %s "$file")
    if [[ "$size" != "-1" && "$actual_size" != "$size" ]]; then
        echo "  $file: $actual_size bytes, expected $size" >&2
        return 1
    fi
    if [[ "$kind" == sha256 ]]; then
        got=$(sha256sum "$file" | cut -d' ' -f1)
    else
        got=$( { printf 'blob %d\0' "$actual_size"; cat "$file"; } | sha1sum | cut -d' ' -f1)
    fi
    if [[ "$got" != "$hash" ]]; then
        echo "  $file: $kind $got, expected $hash" >&2
        return 1
    fi
}

# fetch REPO REV FILE: downloads (resuming) into $dir and verifies
fetch() {
    local repo="$1" rev="$2" file="$3" info kind hash size dst="$dir/$3"
    info=$(expected "$repo" "$rev" "$file") || exit 1
    read -r kind hash size <<<"$info"
    if verify "$dst" "$kind" "$hash" "$size" 2>/dev/null; then
        echo "ok          $dst (already verified)"
    else
        rm -f "$dst"
        echo "downloading $repo/$file ($size bytes) -> $dst"
        local progress=(--no-progress-meter)
        [[ -t 2 ]] && progress=(--progress-bar)
        # A partial file as long as the whole one cannot be resumed: start again.
        if [[ -f "$dst.part" && "$size" != "-1" && $(stat -c %s "$dst.part") -ge "$size" ]]; then rm -f "$dst.part"; fi
        local rc=0
        curl "${curl_args[@]}" "${progress[@]}" --continue-at - --output "$dst.part" \
            "$endpoint/$repo/resolve/$rev/$file" || rc=$?
        if [[ $rc -eq 33 ]]; then  # the server cannot resume (no byte ranges): download it whole
            rm -f "$dst.part"
            rc=0
            curl "${curl_args[@]}" "${progress[@]}" --output "$dst.part" "$endpoint/$repo/resolve/$rev/$file" || rc=$?
        fi
        [[ $rc -eq 0 ]] || die "download of $repo/$file failed (curl exit status $rc; rerun to resume)"
        if ! verify "$dst.part" "$kind" "$hash" "$size"; then
            rm -f "$dst.part"
            die "$repo/$file does not match the hub's checksum (the partial file was removed; rerun to download again)"
        fi
        mv "$dst.part" "$dst"
        echo "ok          $dst ($kind verified)"
    fi
    (cd "$dir" && sha256sum "$file") >> "$sums.tmp"
}

fetch "$model_repo" "$revision" model.safetensors
fetch "$model_repo" "$revision" config.json
for f in "${processor_files[@]}"; do
    fetch "$clip_repo" main "$f"
done
mv "$sums.tmp" "$sums"
echo
echo "done: $dir  (re-check offline with: scripts/get_weights.sh --check $dir)"
preset=pickscore
[[ "$model" == clip ]] && preset=clip
echo "try:  pickscore score --model $dir --preset $preset --prompt \"a photo of a cat\" image1.png image2.jpg"
