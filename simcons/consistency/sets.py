"""Model sets: attribute filters (`objective=Self-Supervised`), explicit lists, or all models."""

from __future__ import annotations

from dataclasses import dataclass

from simcons.storage import ResultStore, StoreError


@dataclass(frozen=True)
class ModelSet:
    """A named set of model keys."""

    label: str
    models: tuple[str, ...]


def parse_set(store: ResultStore, text: str) -> ModelSet:
    """Resolve `all`, `name=value[,name=value...]` or `models:a,b,c` (or `a,b,c`) to a model set."""
    text = text.strip()
    if text == "all":
        return ModelSet("all", tuple(m.key for m in store.models()))
    if text.startswith("models:"):
        return _explicit(store, text, text[len("models:") :])
    if "=" in text:
        filters = _filters(text)
        keys = store.models_where(filters)
        if not keys:
            raise StoreError(_no_match(store, filters))
        return ModelSet(text, tuple(keys))
    return _explicit(store, text, text)


def sets_by_attribute(store: ResultStore, attribute: str) -> list[ModelSet]:
    """One set per value of an attribute, e.g. objective -> Image-Text, Self-Supervised, ..."""
    values = store.attribute_values(attribute)
    if not values:
        known = ", ".join(store.attribute_names()) or "none"
        raise StoreError(f"no model has attribute {attribute!r}; attributes stored: {known}")
    return [ModelSet(f"{attribute}={v}", tuple(store.models_where({attribute: v}))) for v in values]


def set_pairs(sets: list[ModelSet]) -> list[tuple[ModelSet, ModelSet]]:
    """All unordered pairs of sets, each set with itself included (Theta = Phi)."""
    return [(a, b) for i, a in enumerate(sets) for b in sets[i:]]


def _explicit(store: ResultStore, label: str, body: str) -> ModelSet:
    keys = tuple(k.strip() for k in body.split(",") if k.strip())
    if not keys:
        raise StoreError(f"model set {label!r} names no model; write models:a,b,c")
    store.models(keys)  # raises naming unknown keys
    if len(keys) > 3:
        label = f"models:{keys[0]},{keys[1]},... ({len(keys)} models)"
    return ModelSet(label, keys)


def _filters(text: str) -> dict[str, str]:
    filters: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise StoreError(f"bad filter {part!r} in {text!r}; write name=value[,name=value]")
        filters[name.strip()] = value.strip()
    return filters


def _no_match(store: ResultStore, filters: dict[str, str]) -> str:
    hints = []
    for name, value in filters.items():
        values = store.attribute_values(name)
        if not values:
            hints.append(
                f"no model has attribute {name!r} (known: {', '.join(store.attribute_names())})"
            )
        elif value not in values:
            hints.append(f"{name} takes {', '.join(values)}; not {value!r}")
    return (
        "no model matches "
        + ", ".join(f"{k}={v}" for k, v in filters.items())
        + ("; " + "; ".join(hints) if hints else "")
    )
