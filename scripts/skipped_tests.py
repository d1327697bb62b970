#!/usr/bin/env python3
"""Print the skipped tests of a pytest JUnit XML report, grouped by reason (the last step of
``scripts/test.sh``): ``python scripts/skipped_tests.py REPORT.xml``."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

SHOWN = 10


def test_id(classname: str, name: str) -> str:
    """``tests/data/test_x.py::name`` from JUnit's ``tests.data.test_x`` + ``name``."""
    parts = classname.split(".")
    module = max((i for i, part in enumerate(parts) if part.startswith("test_")), default=len(parts) - 1)
    return "::".join(["/".join(parts[: module + 1]) + ".py", *parts[module + 1 :], name])


def main(report: str) -> None:
    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError):
        return  # pytest stopped before writing its report; its own output says why
    cases = list(root.iter("testcase"))
    by_reason: dict[str, list[str]] = defaultdict(list)
    for case in cases:
        skipped = case.find("skipped")
        if skipped is not None:
            reason = (skipped.get("message") or "no reason given").strip()
            by_reason[reason].append(test_id(case.get("classname") or "", case.get("name") or ""))
    count = sum(len(names) for names in by_reason.values())
    print(f"\nskipped tests: {count or 'none'} of {len(cases)}")
    for reason, names in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        print(f"  {len(names)} x {reason}")
        for name in names[:SHOWN]:
            print(f"      {name}")
        if len(names) > SHOWN:
            print(f"      ... and {len(names) - SHOWN} more")


if __name__ == "__main__":
    main(sys.argv[1])
