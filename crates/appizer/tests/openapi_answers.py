"""Checks answers recorded by a test against the server's /openapi.json.

Usage: openapi_answers.py OPENAPI_JSON ANSWERS_JSON, where ANSWERS_JSON is a list of
{"method", "template", "status", "content_type", "body"}. Each answer's status must be
documented for its operation, and a JSON body must match the schema documented for that
status (JSON Schema 2020-12, as OpenAPI 3.1 defines it). Prints every mismatch; exits 1
if there is one.
"""

import json
import sys

from openapi_schema_validator import OAS31Validator


def main() -> int:
    doc = json.load(open(sys.argv[1]))
    answers = json.load(open(sys.argv[2]))
    failures = []
    for a in answers:
        where = f"{a['method']} {a['template']} -> {a['status']}"
        operation = doc["paths"].get(a["template"], {}).get(a["method"].lower())
        if operation is None:
            failures.append(f"{where}: no such operation in the document")
            continue
        response = operation.get("responses", {}).get(str(a["status"]))
        if response is None:
            failures.append(f"{where}: status not documented")
            continue
        if a["status"] == 204 or not a["content_type"].startswith("application/json"):
            continue
        content = response.get("content", {}).get("application/json")
        if content is None:
            failures.append(f"{where}: a JSON body where the document has none")
            continue
        schema = dict(content.get("schema", {}))
        # References are to #/components/...: resolve them against the document.
        schema["components"] = doc.get("components", {})
        errors = sorted(
            OAS31Validator(schema).iter_errors(a["body"]), key=lambda e: list(e.path)
        )
        for e in errors[:3]:
            path = "/".join(str(p) for p in e.absolute_path)
            failures.append(f"{where}: at /{path}: {e.message[:300]}")
    for f in failures:
        print(f)
    print(f"{len(answers)} answers checked, {len(failures)} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
