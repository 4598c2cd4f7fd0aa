#!/usr/bin/env bash
# Run the PPO-vs-SPRIG benchmark: every (method x env x seed) combination, resumable, then plot the results.
# See `./benchmark.sh --help`. The benchmark is benchmark.py (with methods.py) beside this script (standard library, 3.8+),
# run by the python3 on PATH; PYTHON (default: python) names the python that runs the training scripts.
set -euo pipefail
command -v python3 >/dev/null || {
    echo "error: benchmark.sh runs benchmark.py with python3 (3.8 or newer), which is not on PATH" >&2
    exit 2
}
exec python3 "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/benchmark.py" "$@"
