#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""check_header_docs.py weft.h

Every public function (a WEFT_API declaration) of the header has a documentation comment that
says what the function returns (its codes), which threads may call it, and whether it suspends
the calling task: the three things a caller of a function of weft must know (README.md, "The
rules"). Doxygen checks that the comment exists; this checks what it says. Prints each function
that lacks one of the three and exits 1 if any does.
"""
import re
import sys

# What counts as saying it. The header's own wording, kept to a few set phrases so that a new
# function's comment is written with them.
RESULT = re.compile(r"-E[A-Z]{2,}|\b[Rr]eturns?\b|negative errno value")
THREADS = re.compile(
    r"[Tt]ask-only|[Aa]ny thread|[Aa]ny task or thread|[Ff]rom any thread|[Cc]allable from any|"
    r"thread that is not a weft task|[Oo]nly the task that opened|[Oo]nly the owner|"
    r"[Ff]rom inside a function run by weft_blocking")
SUSPENDS = re.compile(r"[Ss]uspends?\b|[Ss]uspending|[Bb]locks the calling OS thread|[Nn]ever suspends")


def main(path):
    text = open(path, encoding="utf-8").read()
    problems = []
    n = 0
    # A documentation comment, then (after nothing but blank space) a WEFT_API declaration.
    for m in re.finditer(r"(/\*\*(?:(?!\*/).)*\*/)?\s*\nWEFT_API\b([^;(]*?)(\w+)\s*\(", text, re.S):
        n += 1
        doc, name = m.group(1) or "", m.group(3)
        doc = re.sub(r"\s*\n\s*\*?\s*", " ", doc)  # one line, without the comment's leaders
        lacks = [what for what, rx in (("what it returns", RESULT), ("which threads may call it",
                                       THREADS), ("whether it suspends", SUSPENDS))
                 if not rx.search(doc)]
        if not doc:
            lacks = ["a documentation comment"]
        if lacks:
            line = text.count("\n", 0, m.start(2)) + 1
            problems.append(f"{path}:{line}: {name}: its comment does not say " + ", ".join(lacks))
    if n == 0:
        print(f"{path}: no WEFT_API declaration found", file=sys.stderr)
        return 1
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} of {n} public functions lack part of their contract", file=sys.stderr)
        return 1
    print(f"every one of the {n} public functions states its result, threads and suspension")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
