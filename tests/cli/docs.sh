#!/usr/bin/env bash
# Every built tool has a man page that renders cleanly, and bash, zsh and fish completions that
# know every long option its --help lists.
source "$(dirname "$0")/lib.sh"
for tool in "$N3_TOOLS"/n3-*; do
    [ -x "$tool" ] || continue
    name=$(basename "$tool")
    _case="$name: man page renders cleanly"
    out=$(LC_ALL=C.UTF-8 groff -t -man -Tutf8 -ww -z "$N3_SRC/man/$name.1" 2>&1)
    if [ ! -f "$N3_SRC/man/$name.1" ]; then _fail "man/$name.1 missing"
    elif [ -n "$out" ]; then _fail "$out"; else _pass; fi
    _case="$name: man page has the required sections"
    missing=""
    for s in NAME SYNOPSIS DESCRIPTION OPTIONS EXAMPLES "EXIT STATUS" "SEE ALSO"; do
        grep -q "^\.SH \"\?$s\"\?" "$N3_SRC/man/$name.1" 2>/dev/null || missing="$missing $s"
    done
    [ -z "$missing" ] && _pass || _fail "missing:$missing"
    bash_c="$N3_SRC/completions/bash/$name"
    zsh_c="$N3_SRC/completions/zsh/_$name"
    fish_c="$N3_SRC/completions/fish/$name.fish"
    for f in "$bash_c" "$zsh_c" "$fish_c"; do
        _case="$name: completion $(basename "$(dirname "$f")")"
        [ -s "$f" ] && _pass || _fail "$f missing"
    done
    _case="$name: bash completion parses"
    bash -n "$bash_c" 2>"$T/err" && _pass || _fail "syntax"
    opts=$("$tool" --help | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u | grep -v -- '--help-all')
    for o in $opts; do
        _case="$name: completions know $o"
        miss=""
        grep -q -- "$o\b" "$bash_c" 2>/dev/null || miss="$miss bash"
        grep -q -- "$o\b" "$zsh_c" 2>/dev/null || miss="$miss zsh"
        grep -q -- "-l ${o#--}\b" "$fish_c" 2>/dev/null || miss="$miss fish"
        _case="$name: man page documents $o"
        sed 's/\\-/-/g' "$N3_SRC/man/$name.1" 2>/dev/null | grep -q -- "$o" || miss="$miss man"
        [ -z "$miss" ] && _pass || _fail "$o missing in:$miss"
    done
done
for p in n3.7 n3-record.5; do
    _case="man/$p renders cleanly"
    out=$(LC_ALL=C.UTF-8 groff -t -man -Tutf8 -ww -z "$N3_SRC/man/$p" 2>&1)
    [ -z "$out" ] && _pass || _fail "$out"
done
finish
