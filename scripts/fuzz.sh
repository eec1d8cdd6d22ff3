#!/usr/bin/env bash
# Runs every cargo-fuzz target in pipeline/fuzz for SECONDS each (default 30) and prints one
# line per target with libFuzzer's execution count. Exits non-zero if any target crashes (the
# crashing input is left in pipeline/fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS]
#
# Toolchain: nightly when rustup has one (libFuzzer with AddressSanitizer, cargo-fuzz's
# default); otherwise the stable toolchain with RUSTC_BOOTSTRAP=1 and no sanitizer, which is
# enough for Rust code without `unsafe`: panics, overflows (debug assertions are on) and
# out-of-bounds indexing are all still caught. FUZZ_TOOLCHAIN=stable forces the fallback.
#
# Corpora grow in pipeline/fuzz/corpus/<target> (git-ignored); committed seeds, where a target
# has them, are read from pipeline/fuzz/seeds/<target>. The build stays in pipeline/fuzz/target,
# outside the main workspace's target directory.
set -euo pipefail

secs=${1:-30}
if ! [[ $secs =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS]   (a positive whole number, default 30)" >&2
    exit 2
fi

cd "$(dirname "$0")/../pipeline/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz not found, installing it"
    cargo install cargo-fuzz --locked
fi

have_rustup=false
command -v rustup >/dev/null 2>&1 && have_rustup=true
if [[ ${FUZZ_TOOLCHAIN:-} != stable ]] && $have_rustup && rustup toolchain list | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz run)
    echo "fuzz: toolchain path: nightly (cargo +nightly fuzz run, AddressSanitizer)"
else
    export RUSTC_BOOTSTRAP=1
    if $have_rustup; then
        fuzz=(cargo +stable fuzz run --sanitizer none)
    else
        fuzz=(cargo fuzz run --sanitizer none)
    fi
    echo "fuzz: toolchain path: stable with RUSTC_BOOTSTRAP=1 (${fuzz[*]})"
fi

mapfile -t targets < <(cargo fuzz list)
if [[ ${#targets[@]} -eq 0 ]]; then
    echo "fuzz: no targets found" >&2
    exit 1
fi

logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT
failed=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    dirs=("corpus/$t")
    [[ -d seeds/$t ]] && dirs+=("seeds/$t")
    log="$logdir/$t.log"
    echo "fuzz: running $t for $secs s"
    rc=0
    "${fuzz[@]}" "$t" "${dirs[@]}" -- -max_total_time="$secs" >"$log" 2>&1 || rc=$?
    # libFuzzer's last word on a clean run: "Done 123456 runs in 30 second(s)".
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
    if [[ $rc -eq 0 && -n $done_line ]]; then
        read -r _ runs _ _ s _ <<<"$done_line"
        summary+=("fuzz $t: $runs runs in $s s, no crash")
    else
        tail -n 80 "$log"
        # The panic message sits above the stack trace; repeat it where it will be seen.
        grep -m 1 -A 1 'panicked at' "$log" || true
        summary+=("fuzz $t: FAILED (exit $rc); crashing input, if any, in pipeline/fuzz/artifacts/$t/")
        failed=1
    fi
    echo "${summary[-1]}"
done

echo "---"
printf '%s\n' "${summary[@]}"
exit "$failed"
