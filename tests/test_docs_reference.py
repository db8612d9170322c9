"""The contract lives in the repository (issue 18 item 9, issue 16 item 7): docs/reference.md.

No source, test or document cites a DESIGN.md the repository does not have; every
section of docs/reference.md cited exists as a heading; the reason-code table lists
every Reason with the HTTP status and GCP error the code really gives.
"""

from __future__ import annotations

import re
from pathlib import Path

from mtlscore import Reason
from mtlscore.asgi import status_for
from mtlscore.proxy.headers import gcp_error

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "docs" / "reference.md"
SOURCES = [*sorted((REPO / "src").rglob("*.py")), *sorted((REPO / "tests").rglob("*.py")),
           *sorted((REPO / "fuzz").rglob("*.py")), *sorted((REPO / "benchmarks").rglob("*.py")),
           *sorted((REPO / "loadtest").rglob("*.py")), REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_nothing_cites_a_design_file_outside_the_repository() -> None:
    me = Path(__file__).resolve()
    cited = [f"{p.relative_to(REPO)}:{n}" for p in SOURCES if p.resolve() != me
             for n, line in enumerate(p.read_text().splitlines(), 1) if "DESIGN.md" in line]
    assert cited == []


def test_every_citation_of_the_reference_names_a_section_it_has() -> None:
    anchors = _anchors(REFERENCE.read_text())
    cited: set[str] = set()
    for p in SOURCES:
        cited |= set(re.findall(r"reference\.md#([\w-]+)", p.read_text()))
    assert {"reason-codes", "defaults", "configuration-file", "command-line", "trust-anchors"} <= cited
    assert cited <= anchors, cited - anchors


def test_the_reason_table_lists_every_code_with_its_status_and_gcp_error() -> None:
    rows = {}
    for line in REFERENCE.read_text().split("## Reason codes", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (cells[2], cells[3].strip("`"))
    assert set(rows) == {r.value for r in Reason}
    for reason in Reason:
        status, gcp = rows[reason.value]
        assert status == str(status_for(reason)), reason
        expected = gcp_error(reason)
        assert gcp == (expected if expected.startswith("client_cert_") else "—"), reason


def test_the_configuration_reference_names_every_key_the_parser_takes() -> None:
    from mtlscore import config

    text = REFERENCE.read_text().split("## Configuration file", 1)[1].split("\n## ", 1)[0]
    for table, keys in (("policy", config._POLICY_KEYS), ("revocation", config._REVOCATION_KEYS),
                        ("trust", config._TRUST_KEYS)):
        section = text.split(f"[{table}]", 1)[1].split("\n[", 1)[0]
        missing = [k for k in keys if not re.search(rf"^{k} = ", section, re.M)]
        assert missing == [], (table, missing)
