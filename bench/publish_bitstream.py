"""Publish the bitstream of a finished `apotflow synth --out DIR` run (one that was not given
``--bitstreams``) under bitstreams/<target>/<design>/ with its manifest, exactly as ``--bitstreams``
would have (hw/flows/build.publish), without placing and routing again:

    python bench/publish_bitstream.py DIR --design NAME --model M.apot --command "apotflow synth ..." \\
        --revision REV

``--command`` is the command that produced DIR and ``--revision`` the commit it ran at (both go into
the manifest); the model gives the manifest's ``model_meta``.
"""

import argparse
import json
import sys
from pathlib import Path

from apotflow.hw.flows.build import publish
from apotflow.sim.flow import versions
from apotflow.sw import export

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--design", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--revision", required=True)
    a = ap.parse_args()
    out = json.loads((a.out / "synth.json").read_text())
    if not out.get("bitstream"):
        print(f"{a.out}: the run made no bitstream ({'; '.join(out.get('notes') or [])})", file=sys.stderr)
        return 2
    out["design"] = a.design
    extra = {"command": a.command, "git_revision": a.revision, "versions": versions(),
             "model_meta": export.load(a.model).meta}
    bit = publish(out, a.out / f"synth-{out['target']}", ROOT / "bitstreams", cycles=out.get("cycles_per_image"),
                  manifest_extra=extra)
    print(bit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
