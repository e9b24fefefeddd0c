"""The browser libraries are the server's own files: pinned, with their licences, matching the
checksums recorded when they were fetched, and GraphiQL's page references no other host."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.api.live import Live
from tests.api.server import TLS

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "api" / "web" / "vendor" / "manifest.json"


def test_every_vendored_file_matches_its_recorded_checksum() -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "api.web.vendor_assets", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr


def test_every_vendored_package_is_pinned_and_carries_its_licence() -> None:
    for package in json.loads(MANIFEST.read_text())["packages"]:
        assert re.fullmatch(r"\d+\.\d+\.\d+", package["version"]), package["name"]
        assert package["integrity"].startswith("sha512-"), package["name"]
        licence = [name for name in package["sha256"] if name.endswith("/LICENSE")]
        assert len(licence) == 1 and (MANIFEST.parent / licence[0]).read_text().count("MIT License") == 1, (
            licence
        )


async def test_graphiql_is_served_from_vendored_files_only(live_on_sqlite: Live) -> None:
    async with httpx.AsyncClient(base_url=live_on_sqlite.url, verify=TLS) as http:
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200 and "GraphiQL" in page.text
        assert not re.search(r"https?://", page.text)
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert [a for a in assets if not a.startswith("data:")] == [
            "/vendor/graphiql/graphiql.min.css",
            "/vendor/graphiql-plugin-explorer/style.css",
            "/vendor/react/react.production.min.js",
            "/vendor/react-dom/react-dom.production.min.js",
            "/vendor/graphiql/graphiql.min.js",
            "/vendor/graphiql-plugin-explorer/index.umd.js",
        ]
        for asset in assets[1:]:
            assert (await http.get(asset)).status_code == 200, asset
        assert (await http.get("/vendor/manifest.json")).status_code == 200
        bundle = "/vendor/graphiql/graphiql.min.js"
        async with http.stream("GET", bundle, headers={"accept-encoding": "gzip"}) as compressed:
            assert compressed.headers["content-encoding"] == "gzip"
            sent = b"".join([chunk async for chunk in compressed.aiter_raw()])
        assert len(sent) < (MANIFEST.parent / "graphiql" / "graphiql.min.js").stat().st_size / 3
