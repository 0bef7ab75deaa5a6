"""Validates cgrun's JSON reports against doc/report.schema.json and doc/check.schema.json.

Used by the cli and vm suites on every report they parse. Needs python3-jsonschema (Debian
package); it is imported on first use so that a missing module fails the test that needs it
with a clear message rather than the import of a whole suite.
"""
import json
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
# doc/ of the checkout; or this file's own directory, where tests/vm/as-user.sh puts copies.
DOC = next((d for d in (os.path.join(_HERE, "..", "doc"), _HERE)
            if os.path.exists(os.path.join(d, "report.schema.json"))), os.path.join(_HERE, "..", "doc"))
_validators = None


def _load():
    global _validators
    if _validators is not None:
        return _validators
    try:
        import jsonschema
    except ImportError as e:
        raise AssertionError("validating reports needs python3-jsonschema "
                             "(apt-get install python3-jsonschema): " + str(e)) from e
    schemas = {}
    for name in ("report.schema.json", "check.schema.json"):
        with open(os.path.join(DOC, name)) as f:
            schemas[name] = json.load(f)
    cls = jsonschema.Draft202012Validator
    for s in schemas.values():
        cls.check_schema(s)
    try:  # jsonschema >= 4.18
        import referencing
        registry = referencing.Registry().with_resources(
            (s["$id"], referencing.Resource.from_contents(s)) for s in schemas.values())
        make = lambda s: cls(s, registry=registry)
    except ImportError:  # Debian 12: 4.10
        store = {s["$id"]: s for s in schemas.values()}
        make = lambda s: cls(s, resolver=jsonschema.RefResolver.from_schema(s, store=store))
    _validators = {"run": make(schemas["report.schema.json"]),
                   "check": make(schemas["check.schema.json"])}
    return _validators


def problems(doc, kind="run"):
    """Every way `doc` breaks the schema of `kind` ("run" or "check"), as text; empty if none."""
    v = _load()[kind]
    return ["/".join(str(p) for p in e.absolute_path) + ": " + e.message
            for e in sorted(v.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def validate(doc, kind="run"):
    """Raises AssertionError naming each violation when `doc` does not match its schema."""
    found = problems(doc, kind)
    if found:
        raise AssertionError(f"the {kind} report breaks doc/{'report' if kind == 'run' else 'check'}"
                             ".schema.json:\n  " + "\n  ".join(found) + "\n" + json.dumps(doc, indent=1)[:4000])
    return doc
