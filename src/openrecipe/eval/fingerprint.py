"""Content fingerprints of models, cached by (path, size, mtime) so re-runs do not re-hash gigabytes."""

from __future__ import annotations

from openrecipe.models.refs import ModelRef
from openrecipe.utils.hashing import cached_sha256_file, sha256_json


def model_fingerprint(reference: str | ModelRef) -> str:
    from openrecipe.models.loading import model_source_path
    from openrecipe.models.refs import resolve_model_ref

    ref = resolve_model_ref(reference)
    template = {"chat_template": ref.template.source} if ref.template is not None else {}
    if ref.kind == "hub":
        return f"hub:{ref.name}" + (f"+{sha256_json(template)}" if template else "")
    parts: list[dict[str, str]] = [template] if template else []
    current = ref
    while current is not None:
        path = model_source_path(current) if current.kind == "default" else current.path
        assert path is not None
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        parts.append({str(p.relative_to(path) if path.is_dir() else p.name): cached_sha256_file(p) for p in files})
        current = current.base
    return sha256_json(parts)
