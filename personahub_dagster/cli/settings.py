"""``settings``: every ``PERSONAHUB_*`` setting and its value here, or the table of docs/settings.md."""

from __future__ import annotations

import argparse

from personahub_dagster.core.config.settings import Settings, env_name, settings, settings_table


def cmd_settings(args: argparse.Namespace) -> int:
    if args.table:
        print(settings_table(), end="")
        return 0
    from personahub_dagster.core.llm.cache.postgres import redact_url

    current = settings()
    for name in Settings.model_fields:
        value = getattr(current, name)
        shown = "" if value is None else value  # a SecretStr prints as **********
        if name == "cache" and value:
            shown = redact_url(value)  # a postgresql:// URL may carry a password
        print(f"{env_name(name):<31} {shown}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    current = sub.add_parser("settings", help="every PERSONAHUB_* setting: its value here, or the table")
    current.add_argument("--table", action="store_true", help="the markdown table of docs/settings.md")
    current.set_defaults(func=cmd_settings)
