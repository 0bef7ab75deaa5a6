#!/bin/bash
# Checks that libcgrun.so exports only cgrun:: symbols (lib/cgrun.map): every defined dynamic
# symbol must demangle to cgrun::..., or be the typeinfo, typeinfo name, vtable or VTT of a
# cgrun type. A std:: template instantiation among them would be an accidental ABI.
#
# usage: exports_test.sh LIBRARY
# Exit 77 (skip) when nm or c++filt is missing.
set -euo pipefail

lib=$1
for tool in nm c++filt; do
    command -v "$tool" >/dev/null || { echo "SKIP: no $tool (binutils)" >&2; exit 77; }
done
[ -f "$lib" ] || { echo "FAIL: no library $lib" >&2; exit 1; }

# "ADDRESS TYPE NAME" lines; NAME demangled (it may contain spaces).
symbols=$(nm -D --defined-only "$lib" | c++filt | cut -d' ' -f3-)
count=$(grep -c . <<<"$symbols" || true)
bad=$(grep -Ev '^((typeinfo|typeinfo name|vtable|VTT) for )?cgrun::' <<<"$symbols" || true)
if [ -n "$bad" ]; then
    echo "FAIL: $lib exports $(grep -c . <<<"$bad") symbol(s) outside cgrun:: (of $count):" >&2
    echo "$bad" | cut -c1-200 >&2
    exit 1
fi
[ "$count" -gt 0 ] || { echo "FAIL: $lib exports nothing" >&2; exit 1; }
grep -qx 'cgrun::spawn(cgrun::options)' <<<"$symbols" || { echo "FAIL: cgrun::spawn is not exported" >&2; exit 1; }
echo "ok: $count exported symbols, all cgrun::"
