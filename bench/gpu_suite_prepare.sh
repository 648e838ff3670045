#!/usr/bin/env bash
# Prepare what bench/gpu_suite.sh needs on the lent GPU machine, which has no network: run it
# HERE, in the repository root, before the `run` call that bench/gpu_suite.sh's header gives.
#
#   bash bench/gpu_suite_prepare.sh     # .whl/ (PyKEEN and its missing deps) + .gpu-data/
#
# - .whl/: PyKEEN 1.11.1 (the version of the H100 run in docs/results.md) and those of its
#   requirements that the machine's image lacks (KINDS.md, "Python packages already there"),
#   as wheels for CPython 3.12 on x86-64 Linux. All are pure-Python (py3-none-any), so the same
#   files also install on this machine's python, whatever its version (the CPU rehearsal,
#   bench/gpu_suite.sh's header). Not optuna: PyKEEN imports it only in pykeen.hpo, which the
#   bench scripts never import; not backports-zstd (pystow works without it).
# - .gpu-data/<name>/: the triple files (train/valid/test) of wn9-img, wn18rr and fb15k-237,
#   copied from $VLKGE_DATA_DIR (else ../shared/data, /work/shared/data); the texts and images stay behind
#   (structural models need none; vlkge logs a warning that the texts are missing), and
#   source.txt: the commit and `git status --short` the numbers come from.
# Both folders are ignored through .git/info/exclude and travel only when `carry` names them.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
SRC_DATA=${VLKGE_DATA_DIR:-}
for dir in "$SRC_DATA" ../shared/data /work/shared/data; do
    [[ -n $dir && -f $dir/wn9-img/train.txt && $(realpath "$dir") != "$PWD/.gpu-data" ]] &&
        SRC_DATA=$dir && break
done
[[ -f $SRC_DATA/wn9-img/train.txt ]] || { echo "no datasets found (set VLKGE_DATA_DIR)" >&2; exit 1; }
PY=${PYTHON:-python3}

WHEELS=(
    pykeen==1.11.1
    class-resolver==0.8.2
    click-default-group==1.2.4
    dataclasses-json==0.6.7
    docdata==0.0.5
    marshmallow==3.26.2
    more-click==0.1.3
    more-itertools==11.2.1
    pystow==0.10.3
    torch-max-mem==0.1.6
    torch-ppr==0.0.8
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64
    manylinux2014_x86_64 manylinux1_x86_64)

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for path in /.whl/ /.gpu-data/; do
    grep -qxF "$path" "$exclude" 2>/dev/null || echo "$path" >>"$exclude"
done

platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platform_args[@]}" -d .whl "${WHEELS[@]}"
echo "requirements the wheels declare (check each is in .whl/ or on the machine):"
for w in .whl/*.whl; do
    unzip -p "$w" '*.dist-info/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' |
        sed 's/^Requires-Dist: //' || true
done | sed 's/[ ;<>=!~(\[].*//' | tr '[:upper:]_' '[:lower:]-' | sort -u | tr '\n' ' '
echo

rm -rf .gpu-data && mkdir -p .gpu-data
for name in wn9-img wn18rr fb15k-237; do
    mkdir -p ".gpu-data/$name"
    for split in train valid test; do
        for file in "$SRC_DATA/$name/$split".{txt,txt.gz,tsv,tsv.gz}; do
            [[ -f $file ]] && cp "$file" ".gpu-data/$name/"
        done
    done
    cp "$SRC_DATA/$name/README.md" ".gpu-data/$name/" 2>/dev/null || true
    [[ $(ls ".gpu-data/$name" | grep -c -E '^(train|valid|test)\.') == 3 ]] ||
        { echo "$name: train/valid/test not all found in $SRC_DATA/$name" >&2; exit 1; }
done

chmod -R u+w .gpu-data # the shared copies are read-only

{ # which source the numbers come from (the device's copy has no .git)
    echo "commit $(git rev-parse HEAD) prepared $(date -u +%FT%TZ)"
    git status --short
} >.gpu-data/source.txt

tree_bytes=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1)
extra_bytes=$(du -cb .whl .gpu-data | tail -1 | cut -f1)
echo "wheels: $(ls .whl | wc -l) files, $(du -sh .whl | cut -f1); data: $(du -sh .gpu-data | cut -f1)"
echo "travels: $(((tree_bytes + extra_bytes) / 1024)) KiB of 65536 (working tree" \
    "$((tree_bytes / 1024)) KiB + .whl + .gpu-data $((extra_bytes / 1024)) KiB)"
