"""``gankit export --format web``: a folder that runs the ONNX generator in a browser,
offline: ``index.html`` (plain HTML and JavaScript), the model, export.json, and the files
of onnxruntime-web's wasm build taken from its npm package.

The package is a pinned version, checked against the sha512 the npm registry publishes
for it (``dist.integrity``): downloaded once into gankit's cache, or given as a local
tarball (``npm pack onnxruntime-web@VERSION`` writes one).
"""

from __future__ import annotations

import base64
import hashlib
import os
import tarfile
from pathlib import Path
from typing import Any

from gankit.data import DataError, default_cache_dir, download
from gankit.files import write_bytes, write_text
from gankit.rundir import RunError

VERSION = "1.31.1"
INTEGRITY = "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
"""``npm view onnxruntime-web@VERSION dist.integrity``."""
REGISTRY = "https://registry.npmjs.org"
"""Where the tarball is downloaded from; ``GANKIT_NPM_REGISTRY`` names a mirror."""
FILES = ("dist/ort.wasm.min.js", "dist/ort-wasm-simd-threaded.mjs", "dist/ort-wasm-simd-threaded.wasm", "package.json")
"""What the page loads (the wasm build: its script, the module it imports, the binary), and the
package's own description (its version and MIT licence; the package has no licence file)."""
FOLDER = "onnxruntime-web"
NPM_PACK = f"npm pack onnxruntime-web@{VERSION}"


def tarball_name() -> str:
    return f"onnxruntime-web-{VERSION}.tgz"


def _sha512_hex() -> str:
    return base64.b64decode(INTEGRITY.removeprefix("sha512-")).hex()


def _verified(path: Path) -> bool:
    digest = hashlib.sha512()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == _sha512_hex()


def onnxruntime_web_tarball(local: Path | None = None, cache_dir: Path | None = None) -> Path:
    """The verified onnxruntime-web tarball: ``local`` when given, else the cached copy,
    downloaded first when there is none (or it is damaged). A RunError says what to do."""
    if local is not None:
        local = Path(local).expanduser()
        if not local.is_file():
            raise RunError(f"--onnxruntime-web {local}: no such file; `{NPM_PACK}` writes {tarball_name()}")
        if not _verified(local):
            raise RunError(f"--onnxruntime-web {local}: not the onnxruntime-web {VERSION} tarball (its sha512 is "
                           f"not the registry's); `{NPM_PACK}` writes that one")
        return local
    cached = (cache_dir or default_cache_dir()) / FOLDER / tarball_name()
    if cached.is_file() and _verified(cached):
        return cached
    registry = os.environ.get("GANKIT_NPM_REGISTRY", REGISTRY).rstrip("/")
    url = f"{registry}/onnxruntime-web/-/{tarball_name()}"
    try:
        return download(url, cached, sha512=_sha512_hex(), timeout=60)
    except DataError as error:
        raise RunError(f"--format web needs onnxruntime-web {VERSION}: {error}; or run `{NPM_PACK}` and pass "
                       f"--onnxruntime-web {tarball_name()}") from None


def write_web_page(folder: Path, description: dict[str, Any], tarball: Path) -> dict[str, Any]:
    """``index.html`` and onnxruntime-web's files into ``folder``, beside the model file;
    returns what export.json records about onnxruntime-web."""
    from jinja2 import Environment, PackageLoader

    with tarfile.open(tarball, "r:gz") as archive:
        for name in FILES:
            member = archive.extractfile(f"package/{name}")  # read by name: nothing else in the archive is written
            write_bytes(folder / FOLDER / Path(name).name, member.read())
    environment = Environment(loader=PackageLoader("gankit", "templates"), autoescape=True)
    classes = f", {description['classes']} classes" if description["classes"] else ""
    about = (f"{Path(description['run']).name}, step {description['step']} ({description['backend']}, "
             f"{description['generator']} generator{classes}), in your browser with onnxruntime-web {VERSION}")
    page = environment.get_template("export_web.html").render(
        title=f"{Path(description['run']).name}: generator", about=about, description=description)
    write_text(folder / "index.html", page)
    return {"version": VERSION, "integrity": INTEGRITY, "files": [f"{FOLDER}/{Path(name).name}" for name in FILES]}
