#!/usr/bin/env bash
# Builds dist/router and dist/slim (into $DIST instead when set; ONLY=router
# or ONLY=slim builds that one).
#
# With a denort runtime (DENORT_BIN set, or network access to download one)
# `deno compile` makes self-contained executables. Without one it falls back
# to `deno bundle` + a launcher script that runs the bundle with the pinned
# Deno and the permissions the program needs. It prints which one it made.
# REQUIRE_COMPILE=1 makes a failed `deno compile` an error instead (image
# builds: a launcher needs a deno the image does not have).
set -euo pipefail
cd "$(dirname "$0")"
DIST=${DIST:-dist}
mkdir -p "$DIST"
want_deno=$(tr -d ' \n' < DENO_VERSION)
deno --version | head -n1 | grep -q "deno $want_deno " ||
  echo "build.sh: warning: deno is not $want_deno (run ./dev setup)" >&2

# name entry flags. Both need --allow-all: FFI (libc sockets) grants
# everything anyway, and reading /proc/self/* (doctor, fd counts) needs it.
# The router's V8 flags: --optimize-for-size keeps the heap small under
# connection churn (young generation and growth steps; otherwise RSS stays
# ~40 MiB higher after a burst of connections); --no-concurrent-marking
# keeps the data-plane thread from waiting on V8's helper threads at the end
# of a collection (docs/performance.md, docs/rules.md round 13);
# --enable-experimental-regexp-engine-on-excessive-backtracks reruns a
# domain_regex that backtracks too long on a name in linear time (docs/rules.md,
# "Fields"). The same
# flags: deno.json's router task, ROUTER_V8_FLAGS in core/v8_flags.ts
# (tests/build_test.ts checks that they agree).
programs=(
  "router main.ts --allow-all --v8-flags=--optimize-for-size,--no-concurrent-marking,--enable-experimental-regexp-engine-on-excessive-backtracks"
  "slim slim/main.ts --allow-all"
)

compile_one() { # name entry perms...
  local name=$1 entry=$2
  shift 2
  local extra=()
  # The reload compile worker is loaded by URL at run time: embed it.
  [[ "$name" == router ]] && extra=(--include config/compile_worker.ts)
  deno compile --quiet --no-check=remote "${extra[@]}" "$@" --output "$DIST/$name" "$entry"
}

bundle_one() { # name entry perms...
  local name=$1 entry=$2
  shift 2
  deno bundle --quiet --platform=deno --output "$DIST/$name.bundle.js" "$entry"
  # The reload compile worker is loaded by URL at run time: bundle it beside
  # (config/compile_client.ts looks for compile_worker.js next to a bundle).
  [[ "$name" == router ]] &&
    deno bundle --quiet --platform=deno --output "$DIST/compile_worker.js" config/compile_worker.ts
  cat > "$DIST/$name" <<LAUNCHER
#!/bin/sh
# Launcher made by build.sh (no denort runtime was available for deno compile).
# Runs the bundle with Deno $want_deno; install it with: npm install -g deno@$want_deno
here=\$(dirname "\$(readlink -f "\$0")")
exec deno run --no-prompt $* "\$here/$name.bundle.js" "\$@"
LAUNCHER
  chmod +x "$DIST/$name"
}

for p in "${programs[@]}"; do
  read -r -a words <<<"$p"
  name=${words[0]}
  entry=${words[1]}
  perms=("${words[@]:2}")
  [[ -z "${ONLY:-}" || "$ONLY" == "$name" ]] || continue
  [[ -f "$entry" ]] || { echo "build.sh: $entry missing, skipping $name" >&2; continue; }
  rm -f "$DIST/$name" "$DIST/$name.bundle.js"
  [[ "$name" != router ]] || rm -f "$DIST/compile_worker.js"
  if compile_one "$name" "$entry" "${perms[@]}" 2>/tmp/build-$name.log; then
    echo "build.sh: $DIST/$name: self-contained executable (deno compile), $(du -h "$DIST/$name" | cut -f1)"
  elif [[ "${REQUIRE_COMPILE:-}" == 1 ]]; then
    echo "build.sh: deno compile failed for $name (REQUIRE_COMPILE=1):" >&2
    sed 's/\x1b\[[0-9;]*m//g' "/tmp/build-$name.log" | head -n 20 >&2
    exit 1
  else
    echo "build.sh: deno compile unavailable for $name ($(sed 's/\x1b\[[0-9;]*m//g' /tmp/build-$name.log | grep -m1 -o 'error sending request[^:]*\|error: .*' | head -c 120)); making a bundle + launcher" >&2
    bundle_one "$name" "$entry" "${perms[@]}"
    echo "build.sh: $DIST/$name: launcher for $DIST/$name.bundle.js (needs deno $want_deno on PATH), $(du -h "$DIST/$name.bundle.js" | cut -f1)"
  fi
done
