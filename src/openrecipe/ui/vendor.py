"""Build-time step: fetch the workbench's JavaScript/CSS from the npm registry into static/vendor/.

Run `python -m openrecipe.ui.vendor` (needs `npm`); the files it writes are committed, so the running
workbench never loads anything from a CDN or needs npm.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

VENDOR_DIR = Path(__file__).parent / "static" / "vendor"
# (npm package, version, file inside the package tarball, name under static/vendor/)
ASSETS = [
    ("htmx.org", "2.0.8", "package/dist/htmx.min.js", "htmx.min.js"),
    ("@json-editor/json-editor", "2.17.2", "package/dist/jsoneditor.js", "jsoneditor.js"),
    ("js-yaml", "4.1.1", "package/dist/js-yaml.min.js", "js-yaml.min.js"),
    ("uplot", "1.6.32", "package/dist/uPlot.iife.min.js", "uPlot.iife.min.js"),
    ("uplot", "1.6.32", "package/dist/uPlot.min.css", "uPlot.min.css"),
]


def vendor(out_dir: Path = VENDOR_DIR) -> dict[str, dict[str, str]]:
    """npm pack each pinned package, copy the one file we serve, record its SHA-256 in manifest.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for package, version, member, name in ASSETS:
            spec = f"{package}@{version}"
            tarball = (
                subprocess.run(
                    ["npm", "pack", spec, "--silent", "--pack-destination", tmp],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            with tarfile.open(Path(tmp) / tarball) as archive:
                extracted = archive.extractfile(member)
                assert extracted is not None, f"{member} missing from {spec}"
                data = extracted.read()
            (out_dir / name).write_bytes(data)
            manifest[name] = {"package": spec, "file": member, "sha256": hashlib.sha256(data).hexdigest()}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


if __name__ == "__main__":
    for name, entry in vendor().items():
        print(f"{name}: {entry['package']} {entry['sha256'][:12]}")
