"""What a bundle must not carry off the publishing machine: its absolute paths and user name (rewritten),
and keys or tokens (refused, naming file:line and the rule that matched)."""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from openrecipe.errors import OpenRecipeError

BINARY_SUFFIXES = frozenset({".safetensors", ".gguf", ".bin", ".pt", ".png", ".jpg", ".model", ".xlsx", ".parquet"})
# Tokenizer vocabularies are data the weights depend on: a rewrite there would change the model.
VERBATIM_NAMES = frozenset({"tokenizer.json", "vocab.json", "merges.txt", "SHA256SUMS"})
# Account names that say nothing about a person; replacing them as words would mangle ordinary text ("root").
SYSTEM_ACCOUNTS = frozenset({"root", "user", "admin", "runner", "ubuntu", "debian", "ec2-user", "nobody", "app"})
SYSTEM_FOLDERS = frozenset({"usr", "etc", "dev", "proc", "sys", "bin", "sbin", "lib", "lib64"})
# An absolute POSIX path of at least two parts, not part of a URL or a longer word.
_ABSOLUTE = re.compile(r"(?<![\w.:/~<>+=-])/(?:[\w.@+-]+/)+[\w.@+-]*")  # not inside base64 (+/)


@dataclass(frozen=True)
class Machine:
    """The strings that identify the publishing machine, with what replaces each."""

    prefixes: tuple[tuple[str, str], ...]
    user: str | None

    @classmethod
    def here(cls, named: dict[Path, str]) -> Machine:
        """`named`: folders the bundle should speak of by role (the run, the recipe's folder)."""
        pairs: dict[str, str] = {}
        for folder, label in [*named.items(), (Path.home(), "~")]:
            for form in {str(folder.absolute()), str(folder.resolve())}:  # never a relative name ("run")
                if len(form) > 1:
                    pairs[form.rstrip("/")] = label
        user = _user_name()
        return cls(tuple(sorted(pairs.items(), key=lambda pair: -len(pair[0]))), user)

    def rewrite(self, text: str, *, generic_paths: bool) -> str:
        for prefix, label in self.prefixes:
            text = text.replace(prefix, label)
        if not generic_paths:
            return text
        text = _ABSOLUTE.sub(_local_path, text)
        if self.user and self.user not in SYSTEM_ACCOUNTS:
            text = re.sub(rf"(?<![\w.-]){re.escape(self.user)}(?![\w-])", "<user>", text)
        return text


def _user_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or None


def _local_path(match: re.Match[str]) -> str:
    """An absolute path keeps its last part (what it named) and loses the machine's folders."""
    path = match.group(0)
    if path.split("/")[1] in SYSTEM_FOLDERS:
        return path  # the same on every machine (and often content: an FAQ about /etc/hosts)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return f"<local>/{name}" if name else "<local>/"


def text_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.suffix.lower() not in BINARY_SUFFIXES:
            with open(path, "rb") as handle:
                if b"\0" not in handle.read(8192):
                    yield path


def rewrite_machine_strings(root: Path, machine: Machine, *, data_dirs: tuple[str, ...] = ("data",)) -> list[str]:
    """Rewrite every text file under `root`; returns the files changed. Data files get only the machine's own
    folders replaced (any other path or word in them is content the model was trained on)."""
    changed = []
    for path in text_files(root):
        relative = path.relative_to(root)
        if relative.name in VERBATIM_NAMES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        generic = relative.parts[0] not in data_dirs
        new = machine.rewrite(text, generic_paths=generic)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(relative.as_posix())
    return changed


# detect-secrets' detectors for well-known key shapes (its entropy and keyword detectors would flag hashes
# and FAQ text about passwords, so they are left out), plus shapes it does not know.
DETECTORS = (
    "AWSKeyDetector",
    "AzureStorageKeyDetector",
    "DiscordBotTokenDetector",
    "GitHubTokenDetector",
    "GitLabTokenDetector",
    "JwtTokenDetector",
    "NpmDetector",
    "OpenAIDetector",
    "PrivateKeyDetector",
    "PypiTokenDetector",
    "SendGridDetector",
    "SlackDetector",
    "StripeDetector",
    "TelegramBotTokenDetector",
    "TwilioKeyDetector",
)
EXTRA_RULES = (
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("OpenAI-style key", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}")),
    (
        "environment key assignment",
        re.compile(
            r"\b[A-Z][A-Z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD)\s*[=:]\s*[\"']?(?![<$])[A-Za-z0-9_\-/+.=]{16,}"
        ),
    ),
)


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}"


def scan_secrets(root: Path) -> list[Finding]:
    """Every line of every text file under `root` that looks like a key or token."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import transient_settings

    files = [path for path in text_files(root) if path.name != "SHA256SUMS"]
    found: set[Finding] = set()
    with transient_settings({"plugins_used": [{"name": name} for name in DETECTORS], "filters_used": []}):
        collection = SecretsCollection(root=str(root))
        for path in files:
            collection.scan_file(str(path.relative_to(root)))
    for filename, secret in collection:
        found.add(Finding(Path(filename).as_posix(), secret.line_number, secret.type))
    for path in files:
        relative = path.relative_to(root).as_posix()
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                for rule, pattern in EXTRA_RULES:
                    if pattern.search(line):
                        found.add(Finding(relative, number, rule))
    return sorted(found, key=lambda item: (item.file, item.line, item.rule))


def refuse_secrets(root: Path) -> None:
    findings = scan_secrets(root)
    if findings:
        listed = "; ".join(str(item) for item in findings[:10])
        more = f" (and {len(findings) - 10} more)" if len(findings) > 10 else ""
        raise OpenRecipeError(
            f"the bundle would contain what looks like a key or token: {listed}{more}",
            fix="remove it from the source file (and rotate the key if it is real), re-run, then publish again",
        )
