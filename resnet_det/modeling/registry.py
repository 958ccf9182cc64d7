"""Registration that survives re-import (a module re-run, or imported under a second name)."""

__all__ = ["register_once"]


def register_once(registry):
    """Decorator: register ``obj`` under its ``__name__`` in detectron2's ``registry`` unless that
    name is already taken (detectron2 raises on a duplicate); returns ``obj`` unchanged."""

    def deco(obj):
        if obj.__name__ not in registry:
            registry.register(obj)
        return obj

    return deco
