"""Vendor the browser libraries listed in api/web/vendor/manifest.json from the npm registry.

    python -m api.web.vendor_assets           # fetch each package with `npm pack`, copy its files
    python -m api.web.vendor_assets --check   # verify the vendored files against the manifest

Each package is fetched at the version the manifest pins. The tarball's integrity (npm's sha512)
must equal the one recorded, unless the version changed or none is recorded yet: then the new one is
recorded. The listed files and the package's licence are copied to api/web/vendor/<package>/ under their
own names, and the SHA-256 of every copied file is recorded, so `--check` (run by the tests) notices
a vendored file that was edited by hand or left behind by an update.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

VENDOR = Path(__file__).resolve().parent / "vendor"
MANIFEST = VENDOR / "manifest.json"


def directory(name: str) -> Path:
    """Where a package's files go: `@graphiql/plugin-explorer` -> api/web/vendor/graphiql-plugin-explorer."""
    return VENDOR / name.removeprefix("@").replace("/", "-")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vendored(package: dict[str, Any]) -> dict[str, str]:
    """The files a package puts in api/web/vendor, relative to it, with their recorded SHA-256."""
    return package.get("sha256", {})


def check(manifest: dict[str, Any]) -> list[str]:
    """What differs between the vendored files and the manifest's checksums (nothing when in step)."""
    problems = []
    recorded = {name for package in manifest["packages"] for name in vendored(package)}
    on_disk = {
        str(path.relative_to(VENDOR)) for path in VENDOR.rglob("*") if path.is_file() and path != MANIFEST
    }
    problems += [f"{name}: not in the manifest" for name in sorted(on_disk - recorded)]
    for package in manifest["packages"]:
        for name, digest in vendored(package).items():
            path = VENDOR / name
            if not path.exists():
                problems.append(f"{name}: missing")
            elif sha256(path) != digest:
                problems.append(f"{name}: its SHA-256 differs from the recorded one")
    return problems


def fetch(package: dict[str, Any], work: Path) -> Path:
    """`npm pack` the pinned version into `work`, check its integrity, and unpack it."""
    spec = f"{package['name']}@{package['version']}"
    packed = json.loads(
        subprocess.run(
            ["npm", "pack", "--json", "--pack-destination", str(work), spec],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )[0]
    if package.get("integrity") not in (None, packed["integrity"]) and package.get("packed") == spec:
        raise SystemExit(f"{spec}: the registry's tarball is not the one recorded ({packed['integrity']})")
    package["integrity"], package["packed"] = packed["integrity"], spec
    unpacked = work / directory(package["name"]).name
    with tarfile.open(work / packed["filename"]) as tarball:
        tarball.extractall(unpacked, filter="data")
    return unpacked / "package"


def update(manifest: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        sources = {package["name"]: fetch(package, work) for package in manifest["packages"]}
        for package in manifest["packages"]:
            target = directory(package["name"])
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            source = sources[package["name"]]
            copies = {name: source / name for name in package["files"]}
            licence_source = sources[package.get("licence_from", package["name"])]
            copies["LICENSE"] = licence_source / (package["licence"] or "LICENSE")
            package["sha256"] = {}
            for name, origin in copies.items():
                copied = target / Path(name).name
                shutil.copyfile(origin, copied)
                package["sha256"][str(copied.relative_to(VENDOR))] = sha256(copied)
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only verify the vendored files")
    manifest = json.loads(MANIFEST.read_text())
    if not parser.parse_args().check:
        update(manifest)
    if problems := check(manifest):
        sys.exit("\n".join(problems))


if __name__ == "__main__":
    main()
