"""audit: could the published numbers have come from the evaluations they claim? Every row of
published/paper.yaml (the paper's Tables 3-6) checked by mlscorecheck against the test sets'
pixel counts, under each assumption of how it was computed.

Writes reports/published_audit.json, which the compare stage reads. It depends on the published
values and the audit's code only, so it runs again when either changes, not on every comparison.
"""

import sys
from pathlib import Path

# This checkout's library, not an installed copy: dvc.yaml tracks src/, so src/ is what must run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import json

from skunet.atomic import atomic_file
from skunet.audit import PUBLISHED_AUDIT_JSON, PUBLISHED_YAML, audit_reference
from skunet.errors import exit_on_error


@exit_on_error
def main() -> None:
    audit = audit_reference(PUBLISHED_YAML)
    with atomic_file(PUBLISHED_AUDIT_JSON) as out:
        out.write_text(json.dumps(audit, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
