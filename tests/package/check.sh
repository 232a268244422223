#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs weft from a build folder into a fresh prefix and uses it as a user would, with nothing
# but that prefix to look in (no ck.pc, no other package):
#   - pkg-config --cflags --libs weft succeeds, adds no -D flag, and its version is the header's;
#   - a program built with pkg-config runs, against the shared library (whose SONAME is what the
#     CMake package's compatibility promises) and fully static (--static: Libs.private is enough);
#   - README.md's first program compiles and runs so;
#   - a CMake project's find_package(weft) gives weft::weft and weft::weft_static, both of which
#     build and run, and the exported targets name no library outside the prefix (libck);
#   - the package version file accepts the same minor release and refuses the next one.
#
#   check.sh BUILD_DIR SOURCE_DIR C_COMPILER CMAKE_GENERATOR WORK_DIR
set -euo pipefail

build=$1 src=$2 cc=$3 generator=$4 work=$5
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
for tool in pkg-config readelf nm; do
    command -v "$tool" >/dev/null || fail "$tool not found (tools/setup installs it)"
done

rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

# The version the header declares: what every other place must say.
header=$src/include/weft.h
ver() { sed -n "s/^#define WEFT_VERSION_$1 \\([0-9]*\\)\\( .*\\)\\{0,1\\}\$/\\1/p" "$header"; }
major=$(ver MAJOR) minor=$(ver MINOR) patch=$(ver PATCH)
[[ -n $major && -n $minor && -n $patch ]] || fail "no version in $header"
version=$major.$minor.$patch

echo "== install into $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || {
    cat "$work/install.log"
    fail "cmake --install"
}
libdir=$(dirname "$(find "$prefix" -name libweft.a -print -quit)")
[[ -d $libdir ]] || fail "no libweft.a installed"
pcdir=$libdir/pkgconfig
[[ -f $pcdir/weft.pc ]] || fail "no weft.pc in $pcdir"

echo "== the libraries"
# ck is used for its headers only; if that changes, weft.pc and the CMake package must say so.
if nm -u "$libdir/libweft.a" | awk '{print $2}' | grep -q '^ck_'; then
    fail "libweft.a needs Concurrency Kit symbols: $(nm -u "$libdir/libweft.a" | grep ' ck_' | head -3)"
fi
if [[ $major == 0 ]]; then
    soname=libweft.so.$major.$minor # a 0.x minor release may change the ABI
else
    soname=libweft.so.$major
fi
got=$(readelf -d "$libdir/libweft.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $got == "$soname" ]] || fail "SONAME is '$got', the package's compatibility needs '$soname'"
[[ -e $libdir/$soname ]] || fail "$soname not installed"
if readelf -d "$libdir/libweft.so" | grep NEEDED | grep -q libck; then
    fail "libweft.so links libck"
fi

echo "== pkg-config with only $pcdir"
export PKG_CONFIG_PATH=$pcdir PKG_CONFIG_LIBDIR=$pcdir
flags=$(pkg-config --cflags --libs weft) || fail "pkg-config --cflags --libs weft"
static_flags=$(pkg-config --static --cflags --libs weft) || fail "pkg-config --static --cflags --libs weft"
echo "   $flags"
echo "   --static: $static_flags"
for f in $flags $static_flags; do
    [[ $f != -D* ]] || fail "pkg-config adds '$f' to a user's flags"
done
got=$(pkg-config --modversion weft)
[[ $got == "$version" ]] || fail "weft.pc says version $got, weft.h $version"

echo "== a program built with pkg-config, shared"
# shellcheck disable=SC2086 # the flags are words
"$cc" -std=c17 -Wall -Wextra -Werror -o "$work/pc_shared" "$here/consumer.c" $flags
readelf -d "$work/pc_shared" | grep -q "NEEDED.*\[$soname\]" || fail "pc_shared does not need $soname"
LD_LIBRARY_PATH=$libdir "$work/pc_shared" || fail "pc_shared failed"

echo "== README.md's first program, built as README.md says"
awk '/^## The first program/ { f = 1 } f && /^```c$/ { c = 1; next } c && /^```$/ { exit } c' \
    "$src/README.md" >"$work/first.c"
[[ -s $work/first.c ]] || fail "no \`\`\`c block under '## The first program' in README.md"
# shellcheck disable=SC2086
"$cc" -std=c17 -Wall -Wextra -Werror -o "$work/first" "$work/first.c" $flags ||
    fail "README.md's first program does not compile"
got=$(LD_LIBRARY_PATH=$libdir "$work/first") || fail "README.md's first program failed"
[[ $got == "weft $version: 42 42 42" ]] || fail "README.md's first program printed '$got'"

echo "== a program built with pkg-config --static, linked statically"
# shellcheck disable=SC2086
"$cc" -std=c17 -Wall -Wextra -Werror -static -o "$work/pc_static" "$here/consumer.c" $static_flags ||
    fail "static link with pkg-config --static"
if readelf -d "$work/pc_static" 2>/dev/null | grep -q NEEDED; then
    fail "pc_static has dynamic dependencies"
fi
"$work/pc_static" || fail "pc_static failed"

echo "== the CMake package"
if grep -l 'libck\|/ck\b' "$prefix"/lib*/cmake/weft/*.cmake; then
    fail "the exported targets name Concurrency Kit"
fi
gen_args=()
[[ -n $generator ]] && gen_args=(-G "$generator")
unset PKG_CONFIG_PATH PKG_CONFIG_LIBDIR
cmake -S "$here" -B "$work/cmake" "${gen_args[@]}" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_CMAKE_SYSTEM_PATH=OFF \
    -DWEFT_EXPECTED_VERSION="$major.$minor" >"$work/cmake.log" 2>&1 || {
    cat "$work/cmake.log"
    fail "configuring a find_package(weft $major.$minor) project"
}
cmake --build "$work/cmake" >"$work/build.log" 2>&1 || {
    cat "$work/build.log"
    fail "building the find_package project"
}
readelf -d "$work/cmake/consumer_shared" | grep -q "NEEDED.*\[$soname\]" ||
    fail "weft::weft did not link $soname"
if readelf -d "$work/cmake/consumer_static" | grep -q 'NEEDED.*libweft'; then
    fail "weft::weft_static linked the shared library"
fi
"$work/cmake/consumer_shared" || fail "consumer_shared (weft::weft) failed"
"$work/cmake/consumer_static" || fail "consumer_static (weft::weft_static) failed"

echo "== the package's version compatibility"
# Asks weftConfigVersion.cmake what find_package(weft WANTED) would: 1 if accepted.
cat >"$work/compatible.cmake" <<'CMAKE'
string(REPLACE "." ";" _p "${PACKAGE_FIND_VERSION}")
list(GET _p 0 PACKAGE_FIND_VERSION_MAJOR)
list(GET _p 1 PACKAGE_FIND_VERSION_MINOR)
list(GET _p 2 PACKAGE_FIND_VERSION_PATCH)
set(PACKAGE_FIND_VERSION_COUNT 3)
include("${F}")
if(PACKAGE_VERSION_COMPATIBLE AND NOT PACKAGE_VERSION_UNSUITABLE)
  message("1")
else()
  message("0")
endif()
CMAKE
vfile=$(echo "$prefix"/lib*/cmake/weft/weftConfigVersion.cmake)
compatible() { cmake -DPACKAGE_FIND_VERSION="$1" -DF="$vfile" -P "$work/compatible.cmake" 2>&1; }
[[ $(compatible "$major.$minor.0") == 1 ]] || fail "the package refuses $major.$minor.0"
if [[ $major == 0 ]]; then
    [[ $(compatible "0.$((minor + 1)).0") == 0 ]] || fail "0.x package accepts the next minor"
    ((minor == 0)) || [[ $(compatible "0.$((minor - 1)).0") == 0 ]] ||
        fail "0.x package accepts the previous minor"
else
    [[ $(compatible "$major.$((minor + 1)).0") == 1 ]] || fail "the package refuses a later minor"
    [[ $(compatible "$((major + 1)).0.0") == 0 ]] || fail "the package accepts the next major"
fi
echo "package check passed: weft $version, $soname"
