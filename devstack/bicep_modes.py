"""Write a copy of ``infra/`` as one deployment mode would deploy it, for offline scanners.

checkov reads Bicep without evaluating parameters, so a value chosen by the private-networking
switch (``vnetEnabled ? 'Disabled' : 'Enabled'``) is neither arm to it. ``make checkov``
scans each mode's copy: ``public`` (the default) and ``private`` (``VNET_ENABLED=true``),
where the checks the public mode skips for want of a network are not skipped.

    python -m devstack.bicep_modes private /tmp/infra-private
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

INFRA = Path(__file__).resolve().parent.parent / "infra"
SWITCHES = ("vnetEnabled", "privateNetworking")
"""The names the switch goes by: main.bicep's parameter and the storage modules'."""
_TERM = r"(?:'[^']*'|[\w.\[\]']+)"
_CHOICE = re.compile(rf"\b(?:{'|'.join(SWITCHES)}) \? ({_TERM}) : ({_TERM})")
_DEFAULT = re.compile(r"^(param vnetEnabled bool = )false$", re.MULTILINE)
PUBLIC_ONLY_SKIPS = ("CKV_AZURE_35", "CKV_AZURE_59")
"""Storage network checks the public mode skips (its app reaches storage over the internet);
the private mode must pass them."""


def resolve(text: str, private: bool) -> str:
    """Return a Bicep file's text with every switch-dependent value chosen for one mode."""
    text = _CHOICE.sub(lambda m: m[1] if private else m[2], text)
    if private:
        text = _DEFAULT.sub(r"\1true", text)
        skipped = "|".join(PUBLIC_ONLY_SKIPS)
        text = re.sub(rf"^\s*// checkov:skip=(?:{skipped}):.*\n", "", text, flags=re.MULTILINE)
    return text


def write_mode(mode: str, target: Path) -> None:
    """Copy ``infra/`` to ``target`` with the switch resolved for ``mode``."""
    if mode not in ("public", "private"):
        raise SystemExit(f"mode {mode!r} is not valid: public or private")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(INFRA, target)
    for path in target.rglob("*.bicep"):
        path.write_text(resolve(path.read_text(), mode == "private"))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m devstack.bicep_modes public|private TARGET_DIR")
    write_mode(sys.argv[1], Path(sys.argv[2]))
