"""Print the uv flags that make `uv pip install` find packages where pip is configured to.

uv does not read pip's configuration, and `make test` installs with uv because pip takes
minutes to unpack and byte-compile the framework stack. Where this machine's pip is set to
read wheels from disk (find-links, extra indexes, constraints), uv must be told the same, or
it would resolve torch from the public index and download a CUDA build.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

# pip option -> uv flag; each pip value may hold several space-separated entries.
FLAGS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}


def pip_settings() -> dict[str, list[str]]:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    settings: dict[str, list[str]] = {}
    for line in listing.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        option = key.rpartition(".")[2]
        if option not in FLAGS:
            continue
        values = settings.setdefault(option, [])
        for value in shlex.split(raw)[0].split() if raw.strip() else []:
            if value not in values:
                values.append(value)
    return settings


def main() -> None:
    flags: list[str] = []
    settings = pip_settings()
    for option, values in settings.items():
        for value in values:
            flags += [FLAGS[option], value]
    if "extra-index-url" in settings or "find-links" in settings:
        # pip takes the best version across every source; uv's default stops at the first
        # index that has the package, which would hide the wheels on disk.
        flags += ["--index-strategy", "unsafe-best-match"]
    print(shlex.join(flags))


if __name__ == "__main__":
    main()
