#!/usr/bin/env python
"""Django's command-line utility; starts the embedded servers when no URLs are configured."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qms.settings")
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        from qms.embedded import ensure_env

        ensure_env()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
