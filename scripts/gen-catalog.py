#!/usr/bin/env python3
"""Prints the enum lists of src/domain/catalog.rs from the official authentik API client.

    pip download --no-deps authentik-client==2026.8.5 -d /tmp/akc
    unzip -q /tmp/akc/*.whl -d /tmp/akc/x
    python3 scripts/gen-catalog.py /tmp/akc/x/authentik_client/models

Paste the output over the three lists (the seed-only aliases are kept by hand).
"""
import re
import sys

models = sys.argv[1]
for const, module, doc in [
    ("EVENT_ACTIONS", "event_actions.py", "EventActions"),
    ("APPS", "app_enum.py", "AppEnum"),
    ("MODELS", "model_enum.py", "ModelEnum"),
]:
    with open(f"{models}/{module}", encoding="utf-8") as f:
        values = re.findall(r" = '([^']+)'", f.read())
    print(f"/// `{doc}` of authentik 2026.8 (authentik-client 2026.8.5): {len(values)} values.")
    print(f"pub const {const}: &[&str] = &[")
    for v in values:
        print(f'    "{v}",')
    print("];\n")
