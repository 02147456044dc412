#!/usr/bin/env bash
# Derives the x64 sizes and field offsets of the Windows structures the driver reads, independently
# of windows-sys: the C compiler for the Windows target lays them out from DDK headers.
#
#   scripts/derive-layouts.sh                  prints `NAME VALUE` lines (NAME: a type for its
#                                              size, Type.member.path for an offset)
#   scripts/derive-layouts.sh --expected-file  the same under the header comment of
#                                              tests/layout_expected.txt; regenerate that file with
#     scripts/derive-layouts.sh --expected-file > tests/layout_expected.txt
#
# Run by hand on a Debian machine (apt-get needs root); CI only runs tests/layout.rs against the
# recorded numbers. Nothing is executed for Windows: scripts/layouts/layouts.c is compiled to
# assembly with x86_64-w64-mingw32-gcc -S and each constant is read back from its `.quad` line.
#
# Where the headers come from (the versions behind the committed numbers are recorded at the top of
# tests/layout_expected.txt: mingw-w64-x86-64-dev 10.0.0-3, gcc-mingw-w64-x86-64 12.2.0-14+25.2,
# libwine-dev 8.0~repack-4, Debian 12):
# - mingw-w64-x86-64-dev (Debian): /usr/share/mingw-w64/include/ddk/ntifs.h, wdm.h, ntddk.h for
#   the kernel types (IO_STATUS_BLOCK, UNICODE_STRING, OBJECT_ATTRIBUTES, FILE_OBJECT, KEVENT,
#   IO_SECURITY_CONTEXT, KEY_VALUE_PARTIAL_INFORMATION, POINTER_ALIGNMENT). It has no fltkernel.h.
# - gcc-mingw-w64-x86-64 (Debian): the compiler.
# - libwine-dev (Debian): only its ddk/fltkernel.h (FLT_CALLBACK_DATA, FLT_IO_PARAMETER_BLOCK,
#   FLT_PARAMETERS, FLT_REGISTRATION, FLT_OPERATION_REGISTRATION, FLT_CONTEXT_REGISTRATION).
#   The package is fetched with `apt-get download` and unpacked into a temporary directory, not
#   installed (installing it would pull in all of Wine).
# - scripts/layouts/mingw_gaps.h: two pointer typedefs Wine's header takes from Wine's own ntifs.h.
# - scripts/layouts/flt_missing.h: FLT_RELATED_OBJECTS and FLT_FILE_NAME_INFORMATION, which neither
#   header set defines, written from Microsoft's documented member lists.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
layouts_dir=$root/scripts/layouts
cc=x86_64-w64-mingw32-gcc
ddk_dir=/usr/share/mingw-w64/include/ddk

fail() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

expected_file=false
case ${1-} in
    '') ;;
    --expected-file) expected_file=true ;;
    *) fail "unknown argument '$1' (expected nothing or --expected-file)" ;;
esac

if ! command -v "$cc" >/dev/null || [ ! -f "$ddk_dir/ntifs.h" ]; then
    printf '==> installing mingw-w64-x86-64-dev gcc-mingw-w64-x86-64\n' >&2
    apt-get update -qq >&2 || fail "apt-get update failed (run as root on Debian)"
    apt-get install -y -qq mingw-w64-x86-64-dev gcc-mingw-w64-x86-64 >&2 \
        || fail "could not install the mingw-w64 compiler and headers"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt's download sandbox user must be able to write here.
chmod 0777 "$work"
(cd "$work" && apt-get download -qq libwine-dev >&2) || fail "apt-get download libwine-dev failed"
wine_deb=$(find "$work" -maxdepth 1 -name 'libwine-dev_*.deb' | head -n 1)
[ -n "$wine_deb" ] || fail "apt-get download left no libwine-dev package"
dpkg-deb -x "$wine_deb" "$work/wine"
fltkernel=$(find "$work/wine" -path '*/ddk/fltkernel.h' | head -n 1)
[ -n "$fltkernel" ] || fail "libwine-dev ships no ddk/fltkernel.h"

"$cc" -S -o "$work/layouts.s" -Wall -Wextra -Werror \
    -I"$ddk_dir" -I"$layouts_dir" -DWINE_FLTKERNEL="\"$fltkernel\"" "$layouts_dir/layouts.c" \
    || fail "compiling scripts/layouts/layouts.c failed"

# `layout__A__b:` followed by `.quad N` (or `.space 8` for zero) becomes `A.b N`.
values=$(awk '
    /^layout__[A-Za-z0-9_]+:$/ {
        name = substr($1, 9, length($1) - 9)
        gsub(/__/, ".", name)
        if ((getline) <= 0) { print "error: " name " has no value" > "/dev/stderr"; exit 1 }
        if ($1 == ".quad") value = $2
        else if ($1 == ".space" && $2 == "8") value = 0
        else { print "error: unexpected value line for " name ": " $0 > "/dev/stderr"; exit 1 }
        print name, value
        count++
    }
    END { if (count == 0) { print "error: no layout constants found" > "/dev/stderr"; exit 1 } }
' "$work/layouts.s")

if $expected_file; then
    version() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || printf 'unknown'; }
    cat <<EOF
# x64 sizes (NAME) and field offsets (Type.member) of the Windows structures the driver reads,
# derived independently of windows-sys by scripts/derive-layouts.sh: x86_64-w64-mingw32-gcc laid
# them out from DDK headers. Checked against windows-sys by tests/layout.rs. Regenerate with
#   scripts/derive-layouts.sh --expected-file > tests/layout_expected.txt
#
# Derived $(date -u +%Y-%m-%d) from Debian packages:
#   mingw-w64-x86-64-dev $(version mingw-w64-x86-64-dev) (ddk/ntifs.h, wdm.h: kernel types)
#   gcc-mingw-w64-x86-64 $(version gcc-mingw-w64-x86-64) (compiler: $("$cc" -dumpversion))
#   libwine-dev $(dpkg-deb -f "$wine_deb" Version) (ddk/fltkernel.h: Filter Manager types)
# plus scripts/layouts/flt_missing.h (FLT_RELATED_OBJECTS, FLT_FILE_NAME_INFORMATION, from
# Microsoft's documented member lists; in neither header set).

EOF
fi
printf '%s\n' "$values"
