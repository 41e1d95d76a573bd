#!/usr/bin/env bash
# One-command GPU check of tinyae (issue 7): what it found, the CUDA tests, the GPU benchmarks.
#
#     bash benchmarks/gpu_check.sh                  # from anywhere; about 5 minutes at most
#
# Expects a GPU machine whose Python already has numpy, cupy (the wheel matching the CUDA
# driver: cupy-cuda11x / cupy-cuda12x / cupy-cuda13x), pytest and, for the benchmark
# comparison, torch with CUDA. It installs nothing but the project itself, and only when the
# C++ CPU kernels are not built yet, the build tools are there and tinyae is not installed from
# another folder (pip install --no-build-isolation --no-deps -e .); otherwise the CPU side of
# the tests uses the NumPy twin (TINYAE_KERNELS=numpy). The GPU code does not need the extension.
#
# Steps: 1. is a GPU usable (else exit 2 with the reason)  2. C++ kernels  3. python -m tinyae info
#        4. every CUDA test: tests/test_gpu.py and the CUDA kernel tests first, then the cuda
#           cases of every other suite (ops, tensor, gradcheck, conv, data, layers, optimizers)
#        5. python -m benchmarks.report --device cuda --quick --no-memory   6. a short summary
#
# Settings (environment): PYTHON (default python), GPU_CHECK_BUDGET (seconds, default 300),
# GPU_CHECK_OUT (logs and the report; default $OUT if set, else a new temporary folder),
# GPU_CHECK_MEMORY=1 (also measure peak GPU memory: fresh subprocesses, slower),
# GPU_CHECK_BUILD=0 / 1 (never / always build the C++ kernels when they are missing).
#
# Exit status: 0 everything passed; 1 a test failed; 2 no usable GPU; 3 the benchmark report
# failed; 124 the time budget ran out before the tests finished.
set -u -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PYTHON=${PYTHON:-python}
BUDGET=${GPU_CHECK_BUDGET:-300}
OUT_DIR=${GPU_CHECK_OUT:-${OUT:-$(mktemp -d -t tinyae-gpu-check.XXXXXX)}}
mkdir -p "$OUT_DIR"
START=$SECONDS

say() { printf '\n== %s (%ds)\n' "$1" $((SECONDS - START)); }
seconds_left() { echo $((BUDGET - (SECONDS - START))); }

# capped RESERVE CMD...: run CMD with whatever is left of the budget minus RESERVE seconds
# (kept for the later steps); returns 124 without running when less than 15 s would be left.
capped() {
    local reserve=$1
    shift
    local left
    left=$(seconds_left)
    local limit=$((left - reserve))
    if ((limit < 15)); then
        echo "skipped: $((left > 0 ? left : 0))s of the ${BUDGET}s budget left, ${reserve}s kept for later steps"
        return 124
    fi
    timeout --kill-after=10 "$limit" "$@"
}

say "tinyae GPU check in $(pwd), logs in $OUT_DIR"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
else
    echo "nvidia-smi: not found"
fi

# ------------------------------------------------------------------------ 1. a usable GPU
say "1. GPU"
if ! reason=$("$PYTHON" -c 'import tinyae; r = tinyae.cuda.unavailable_reason(); print(r or "")' 2>&1); then
    echo "cannot import tinyae with $PYTHON:"
    echo "$reason"
    exit 2
fi
if [[ -n "$reason" ]]; then
    echo "no usable GPU: $reason"
    echo "(install the CuPy wheel for this CUDA: pip install cupy-cuda12x, or cupy-cuda11x / cupy-cuda13x)"
    exit 2
fi
echo "CuPy sees a GPU"

# -------------------------------------------------------------------------- 2. C++ kernels
say "2. C++ CPU kernels (the CPU side of the comparisons)"
# Where pip has tinyae installed from ("" when it is not installed): a build here re-points an
# editable install, so it is done only for this checkout (or with GPU_CHECK_BUILD=1).
installed_from=$("$PYTHON" -c '
import importlib.metadata as md, json
try:
    text = md.distribution("tinyae").read_text("direct_url.json") or "{}"
    print(json.loads(text).get("url", "site-packages"))
except md.PackageNotFoundError:
    print("")' 2>/dev/null)
build=${GPU_CHECK_BUILD:-auto}
if [[ "$build" == auto && -n "$installed_from" && "$installed_from" != "file://$(pwd)" ]]; then
    build=0
    echo "tinyae is installed from $installed_from, not from here: not rebuilding (GPU_CHECK_BUILD=1 forces it)"
fi
if "$PYTHON" -c 'import tinyae._C' 2>/dev/null; then
    echo "built"
elif [[ "$build" != 0 ]] && command -v cmake >/dev/null && command -v c++ >/dev/null &&
    "$PYTHON" -c 'import scikit_build_core, pybind11' 2>/dev/null; then
    echo "building: pip install --no-build-isolation --no-deps -e . (log: $OUT_DIR/build.log)"
    if capped 200 "$PYTHON" -m pip install --no-build-isolation --no-deps -e . >"$OUT_DIR/build.log" 2>&1 &&
        "$PYTHON" -c 'import tinyae._C' 2>/dev/null; then
        echo "built"
    else
        echo "build failed or timed out (tail of the log below): using the NumPy twin"
        tail -n 5 "$OUT_DIR/build.log"
        export TINYAE_KERNELS=numpy
    fi
else
    echo "not built, and not building it here: using the NumPy twin"
    export TINYAE_KERNELS=numpy
fi

# ----------------------------------------------------------------------------------- 3. info
say "3. python -m tinyae info"
capped 200 "$PYTHON" -m tinyae info | tee "$OUT_DIR/info.txt"
gpu_line=$(grep '^GPU:' "$OUT_DIR/info.txt" || echo "GPU: ?")

# ----------------------------------------------------------------------------------- 4. tests
# run_tests NAME RESERVE PYTEST-ARGS...: one pytest run, its log in $OUT_DIR/tests-NAME.log; sets
# tests_status (the worst exit status so far) and appends pytest's last line to tests_lines.
tests_status=0
tests_lines=""
run_tests() {
    local name=$1 reserve=$2
    shift 2
    capped "$reserve" "$PYTHON" -m pytest "$@" -q -rfEx -p no:cacheprovider 2>&1 | tee "$OUT_DIR/tests-$name.log"
    local status=$?
    local last
    last=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error|skipped|deselected|xfailed)' "$OUT_DIR/tests-$name.log" |
        tail -n 1 | tr -d '=' | sed 's/^ *//')
    tests_lines+=$(printf '\n  %-6s %s' "$name:" "${last:-no pytest summary (status $status)}")
    if ((status != 0 && (tests_status == 0 || status == 124 || status == 137))); then
        tests_status=$status
    fi
}
# The GPU suite and the kernels first: if the budget runs out later, these results are in.
say "4a. CUDA tests: tests/test_gpu.py, tests/test_kernels.py -k 'cuda or gpu'"
run_tests gpu 150 tests/test_gpu.py tests/test_kernels.py -k "cuda or gpu"
say "4b. the cuda cases of every other suite: pytest tests -k cuda"
run_tests suites 90 tests -k cuda --ignore=tests/test_gpu.py --ignore=tests/test_kernels.py

# ------------------------------------------------------------------------------ 5. benchmarks
say "5. python -m benchmarks.report --device cuda --quick (log: $OUT_DIR/report.log)"
memory_flag=--no-memory
[[ "${GPU_CHECK_MEMORY:-0}" == 1 ]] && memory_flag=
# shellcheck disable=SC2086  # $memory_flag is empty or one word
capped 5 "$PYTHON" -m benchmarks.report --device cuda --quick $memory_flag --out "$OUT_DIR" 2>&1 |
    tee "$OUT_DIR/report.log"
report_status=$?

# --------------------------------------------------------------------------------- 6. summary
say "6. summary"
echo "$gpu_line"
echo "tests:$tests_lines"
if ((tests_status != 0)); then
    cat "$OUT_DIR"/tests-*.log | grep -E '^(FAILED|ERROR) ' | head -n 20
fi
if ((report_status == 0)) && [[ -f "$OUT_DIR/latest-cuda.md" ]]; then
    echo "benchmark: $OUT_DIR/latest-cuda.md (tinyae / PyTorch per layer and training step):"
    grep -E '^\| (L|W)[ 0-9]' "$OUT_DIR/latest-cuda.md" || cat "$OUT_DIR/latest-cuda.md"
else
    echo "benchmark: failed or timed out (status $report_status); see $OUT_DIR/report.log"
fi
echo "time:      $((SECONDS - START))s of ${BUDGET}s"

if ((tests_status == 124 || tests_status == 137)); then
    echo "RESULT: the tests ran out of time"
    exit 124
elif ((tests_status != 0)); then
    echo "RESULT: FAILED (tests)"
    exit 1
elif ((report_status != 0)); then
    echo "RESULT: FAILED (benchmark report)"
    exit 3
fi
echo "RESULT: PASSED"
