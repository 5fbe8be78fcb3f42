#!/usr/bin/env bash
# `make fuzz`: run every cargo-fuzz target of the workspace for FUZZ_SECONDS
# each (default 60). Works on the stable toolchain: cargo-fuzz is installed
# from crates.io if missing, and targets run with `--sanitizer none` (no
# AddressSanitizer, which needs nightly; Rust code is memory-safe anyway and
# the targets assert the parsers' invariants). libFuzzer's coverage
# guidance works on stable.
#
# Longer runs: FUZZ_SECONDS=3600 make fuzz, or one target by hand:
#   cd crates/smtp-proto/fuzz && cargo fuzz run --sanitizer none session -- -max_total_time=3600
# A finding is written to <crate>/fuzz/artifacts/<target>/crash-*; reproduce
# it with `cargo fuzz run --sanitizer none <target> <file>`, fix, and add the
# input to the crate's table-driven tests as a regression case.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${FUZZ_SECONDS:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked
fi
status=0
for dir in crates/*/fuzz; do
  [ -f "$dir/Cargo.toml" ] || continue
  for target in $(cd "$dir" && cargo fuzz list); do
    echo "== $dir $target (${SECONDS_EACH}s)"
    if ! (cd "$dir" && cargo fuzz run --sanitizer none "$target" -- \
          -max_total_time="$SECONDS_EACH" -print_final_stats=1 2>&1 | grep -E "^(Done|stat::number_of_executed_units|==|SUMMARY|thread)" ); then
      :
    fi
    if ls "$dir/artifacts/$target"/crash-* "$dir/artifacts/$target"/oom-* "$dir/artifacts/$target"/timeout-* >/dev/null 2>&1; then
      echo "fuzz: FINDING in $dir $target: $(ls "$dir/artifacts/$target")"
      status=1
    fi
  done
done
exit $status
