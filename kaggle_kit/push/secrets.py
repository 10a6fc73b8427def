"""What may travel to Kaggle: regular files only, no credential by name, no byte of the user's own key or token.

A dataset is often public and a kernel's script is readable by whoever can see the kernel, so every upload the kit
makes (`dataset push`, the bundle of `push`) is checked here before any request:
- a file is checked for what its bytes are, not only for its name: a file whose bytes hold the user's Kaggle key or
  token (the ones the official client authenticates with: `user_secrets`) is refused, whatever it is called;
- a name that is a credential's (`kaggle.json`, `KAGGLE.JSON`, `kaggle.json.bak`, `kaggle (1).json`,
  `Access_Token`, `credentials.json`, `.env`, `.env.local`, `.netrc`, a folder named `.kaggle`) is refused;
- a symbolic link is refused wherever it leads: the client would upload what it points at (``cfg -> ~/.kaggle``
  uploads the key), and only the regular files inside the folder may travel. A socket, pipe or device is refused too.
Secrets shorter than 8 characters are not searched for (they would match by chance); keys and tokens are longer.
"""

from __future__ import annotations

import json
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path

from kaggle_kit.errors import UsageError

__all__ = ["user_secrets", "looks_like_credential", "holds_secret", "travelling_files", "check_text_travels"]

_MIN_SECRET = 8
_BLOCK = 1 << 20
# names folded (NFKC, lower case, invisible characters dropped) and read without separators ("-", "_", " ", "."):
# env files, netrc files and home config folders by their start; kaggle.json copies, tokens and credentials anywhere
_STARTS = (".env", "env.", ".envrc", ".netrc", "_netrc", ".git-credentials", ".kaggle", ".config", ".ssh", ".aws",
           ".gnupg")  # fmt: skip
_INSIDE = ("accesstoken", "credential", "apitoken", "apikey", "secret")
_KIT_FILES = ("kaggle-kit", "kaggle_kit", "local-kaggle")  # the kit's own files: a status, a rehearsal's state
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def looks_like_credential(name: str) -> bool:
    """True for a file or folder name that is a credential's or a copy of one, in any case or spelling: kaggle.json
    and its copies ("my_kaggle.json", "Copy of kaggle.json", "kaggle2.json"), access tokens, credentials files,
    .env files ("prod.env", ".env.local"), netrc files, and home config folders (.kaggle*, .config, .ssh, .aws)."""
    folded = unicodedata.normalize("NFKC", name).translate(_INVISIBLE).strip().lower()
    bare = re.sub(r"[-_ .]", "", folded)
    if folded.startswith(_KIT_FILES):
        return False
    return (
        folded.startswith(_STARTS)
        or folded.endswith(".env")
        or ("kaggle" in folded and ".json" in folded)
        or any(word in bare for word in _INSIDE)
    )


def user_secrets(environ: Mapping[str, str] | None = None) -> list[bytes]:
    """The user's Kaggle key and tokens, where the official client finds them: ``KAGGLE_KEY``, ``KAGGLE_API_TOKEN``
    (a token or a file holding one), and in the config folders (``KAGGLE_CONFIG_DIR``, ``~/.kaggle``,
    ``~/.config/kaggle``): kaggle.json's key, access_token(.txt), credentials.json's tokens. Read only to compare."""
    env = os.environ if environ is None else environ
    found: list[str] = [env.get("KAGGLE_KEY", "")]
    token = env.get("KAGGLE_API_TOKEN", "")
    found.append(_read_text(Path(token)) if token and Path(token).is_file() else token)
    home = Path(env.get("HOME") or Path.home())
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    dirs = {Path(d) for d in (env.get("KAGGLE_CONFIG_DIR"), home / ".kaggle", xdg / "kaggle") if d}
    for folder in dirs:
        for name in ("access_token", "access_token.txt"):
            found.append(_read_text(folder / name))
        for name, keys in (("kaggle.json", ("key",)), ("credentials.json", ("access_token", "refresh_token"))):
            try:
                data = json.loads(_read_text(folder / name) or "{}")
            except ValueError:
                continue
            if isinstance(data, dict):
                found.extend(str(data.get(k) or "") for k in keys)
    secrets = {s.strip().encode() for s in found if len(s.strip()) >= _MIN_SECRET}
    return sorted(secrets)


def holds_secret(path: str | os.PathLike, secrets: list[bytes]) -> bool:
    """True when the bytes of the file `path` contain one of `secrets` (read in 1 MiB blocks, overlapping)."""
    if not secrets:
        return False
    overlap = max(len(s) for s in secrets) - 1
    tail = b""
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            window = tail + block
            if any(s in window for s in secrets):
                return True
            tail = window[-overlap:] if overlap else b""
    return False


def check_text_travels(data: bytes, what: str, secrets: list[bytes] | None = None) -> None:
    """Refuse (one line) bytes about to be sent, e.g. a kernel's script, that hold the user's key or token."""
    secrets = user_secrets() if secrets is None else secrets
    if any(s in data for s in secrets):
        raise UsageError(f"{what} holds your Kaggle key or token: a credential never travels; remove it", what)


def travelling_files(folder: str | os.PathLike, secrets: list[bytes] | None = None,
                     before_reading: Callable[[list[Path]], None] | None = None) -> list[Path]:  # fmt: skip
    """The regular files inside `folder` that an upload of it would send, checked (see the module docstring);
    one-line `UsageError` naming the first thing that must not travel, before any request is made. Names and kinds
    are checked first; then `before_reading(files)` (cheap checks, e.g. sizes: a 20 GB sparse file is refused before
    its 20 GB of holes are read); then every file's bytes."""
    folder = Path(folder)
    secrets = user_secrets() if secrets is None else secrets
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            path = here / name
            shown = path.relative_to(folder)
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise UsageError(f"{folder} holds {shown}, a symbolic link (to {os.readlink(path)}): only the "
                                 "regular files inside the folder travel; copy in what you mean to publish",
                                 str(shown))  # fmt: skip
            if looks_like_credential(name):
                raise UsageError(f"{folder} holds {shown}: a credential never travels (its name is a credential "
                                 "file's); move it out", str(shown))  # fmt: skip
            if any(secret in os.fsencode(name) for secret in secrets):  # file and folder names travel too
                raise UsageError(f"{folder} holds a file or folder whose name contains your Kaggle key or token: a "
                                 "credential never travels; rename or move it", "name")  # fmt: skip
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise UsageError(f"{folder} holds {shown}, which is not a regular file: only regular files travel",
                                 str(shown))  # fmt: skip
            files.append(path)
    if before_reading is not None:
        before_reading(files)
    for path in files:
        if holds_secret(path, secrets):
            shown = path.relative_to(folder)
            raise UsageError(f"{folder} holds {shown}, whose bytes contain your Kaggle key or token: a credential "
                             "never travels; move it out", str(shown))  # fmt: skip
    return files


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace") if path.is_file() else ""
    except OSError:
        return ""
