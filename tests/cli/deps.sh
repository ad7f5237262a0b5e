#!/usr/bin/env bash
# Every file the build uses from outside the source tree must come from a Debian package that
# scripts/install-deps.sh installs, by name or through Depends/Pre-Depends (never Recommends: the
# script installs with --no-install-recommends). A fresh machine once failed `make run` because
# libdnnl-dev's CMake config needs OpenCL, which libdnnl-dev only recommends.
# Looked at: the paths in CMakeCache.txt (libraries, include and package-config dirs, tools) and
# every header the compiler read (ninja's dependency log), both resolved through symlinks.
source "$(dirname "$0")/common.bash"
ROOT=$(pwd)
CACHE="$BUILD/CMakeCache.txt"
[[ -f "$CACHE" ]] || { echo "FAIL: $CACHE missing (configure first)" >&2; exit 1; }
command -v dpkg-query >/dev/null && command -v apt-cache >/dev/null || { echo "SKIP: not a Debian machine"; exit 0; }

# The script's package list is the bash array PACKAGES=( ... ); read it by sourcing that part.
eval "$(sed -n '/^PACKAGES=(/,/^)/p' scripts/install-deps.sh)"
[[ ${#PACKAGES[@]} -gt 0 ]] || { echo "FAIL: no PACKAGES=( ) list in scripts/install-deps.sh" >&2; exit 1; }
apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances "${PACKAGES[@]}" 2>/dev/null |
  grep -v '^ ' | sed 's/:amd64$//; s/^<//; s/>$//' | sort -u >"$TMP/closure"
[[ -s "$TMP/closure" ]] || { echo "FAIL: apt-cache depends gave nothing for ${PACKAGES[*]}" >&2; exit 1; }

# Paths the build found: absolute paths in the cache, then the headers the compiler read.
grep -E '^[A-Za-z0-9_.+-]+:(FILEPATH|PATH|STRING)=/' "$CACHE" |
  grep -vE '^(CMAKE_INSTALL|CMAKE_CACHEFILE_DIR|CMAKE_HOME_DIRECTORY|ikv_(BINARY|SOURCE)_DIR)' |
  sed 's/^[^=]*=//' | tr ';' '\n' >"$TMP/paths"
if [[ -f "$BUILD/build.ninja" ]] && command -v ninja >/dev/null; then
  ninja -C "$BUILD" -t deps 2>/dev/null | sed -n 's/^    //p' | grep '^/' >>"$TMP/paths" || true
fi
# The owner of a path is the owner of its first spelling that dpkg knows: the path itself, else its
# target (/usr/bin/c++ is an alternatives symlink no package owns), else either without /usr
# (merged-/usr: dpkg may know a library as /lib/...). A -dev package's .so symlink is thus judged
# by the -dev package, not by the runtime library it points to.
build_dir=$(realpath "$BUILD")
sort -u "$TMP/paths" | while read -r p; do [[ -e "$p" ]] && echo "$p"; done >"$TMP/existing" || true
xargs -r -d '\n' realpath <"$TMP/existing" | paste "$TMP/existing" - |
  awk -F'\t' -v root="$ROOT/" -v build="$build_dir/" 'index($2, root) != 1 && index($2, build) != 1' >"$TMP/resolved"
cut -f1 "$TMP/resolved" >"$TMP/files"
awk -F'\t' '{ print $1 "\t" $1 "\t1"; print $1 "\t" $2 "\t2"; r = $2; sub(/^\/usr/, "", r); print $1 "\t" r "\t3"
  p = $1; sub(/^\/usr/, "", p); print $1 "\t" p "\t4" }' "$TMP/resolved" | sort -u >"$TMP/spellings"
cut -f2 "$TMP/spellings" | sort -u | xargs -r dpkg-query -S 2>/dev/null | grep -v '^diversion' >"$TMP/owned" || true
echo "checking $(wc -l <"$TMP/files") paths against the closure of ${#PACKAGES[@]} packages ($(wc -l <"$TMP/closure") packages)"

# dpkg-query -S prints "pkg1, pkg2: /path"; a path is fine when one of its owners is in the closure.
awk -F': ' 'NR == FNR { ok[$1] = 1; next }
  FILENAME == ARGV[2] { owners[$2] = $1; next }
  { split($0, s, "\t"); p = s[1]; seen[p] = 1
    if ((s[2] in owners) && (!(p in rank) || s[3] < rank[p])) { rank[p] = s[3]; who[p] = owners[s[2]] } }
  END { for (p in seen) {
      if (!(p in who)) { print p " (no Debian package owns it)"; continue }
      n = split(who[p], o, ", "); fine = 0
      for (i = 1; i <= n; i++) { sub(/:amd64$/, "", o[i]); if (o[i] in ok) fine = 1 }
      if (!fine) print p " (from " who[p] ")" } }' \
  "$TMP/closure" "$TMP/owned" "$TMP/spellings" | sort >"$TMP/missing"
mapfile -t missing <"$TMP/missing"
if ((${#missing[@]})); then
  for m in "${missing[@]}"; do bad "not installed by scripts/install-deps.sh: $m"; done
else
  pass "every path the build uses comes from scripts/install-deps.sh's packages"
fi
finish
