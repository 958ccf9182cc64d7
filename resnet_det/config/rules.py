"""The one merge-and-check mechanism of both stages' configs (detection's detectron2 CfgNode and
pretraining's fvcore one): :func:`merge_config` turns yacs' errors into ones that name the file,
the key, the closest known keys or what to write instead, and :func:`check_rules` lists every
value outside its allowed range."""
from __future__ import annotations

import difflib
import math
import os

import yaml

__all__ = ["ConfigError", "ConfigKeyError", "check_rules", "get_key", "merge_config", "number", "one_of"]


class ConfigError(ValueError):
    """A config value is out of range; the message names the key and the allowed values."""


class ConfigKeyError(ConfigError, KeyError):
    """A config key that does not exist (a ``KeyError``, as yacs raises, and a ConfigError)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _is_number(v, integer=False):
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
        return False
    return integer or math.isfinite(v)


def one_of(*choices):
    """A rule: the value is one of ``choices`` (of the same type: True is not 1)."""
    return lambda v: any(v == c and type(v) is type(c) for c in choices), " | ".join(map(str, choices))


def number(lo=None, hi=None, *, integer=False, lo_open=False, hi_open=False, note=""):
    """A rule: an integer (or a finite number) in the range ``lo``..``hi`` (ends included unless
    ``lo_open``/``hi_open``)."""
    def check(v):
        return (_is_number(v, integer) and (lo is None or (v > lo if lo_open else v >= lo))
                and (hi is None or (v < hi if hi_open else v <= hi)))

    words = "an integer" if integer else "a number"
    if lo is not None and hi is not None:
        words += f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    elif lo is not None:
        words += f" {'>' if lo_open else '>='} {lo}"
    return check, words + (f" ({note})" if note else "")


def get_key(cfg, key, default=None):
    """The value of the dotted ``key`` (``"SOLVER.BASE_LR"``) in ``cfg``; ``default`` when a
    part of it does not exist."""
    for part in key.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return default
        cfg = cfg[part]
    return cfg


def check_rules(cfg, rules, source="config") -> None:
    """Raise :class:`ConfigError` listing every key of ``rules`` (key -> (check, allowed words))
    whose value in ``cfg`` fails its check, each as ``KEY = value; allowed: words``."""
    problems = []
    for key, (check, allowed) in rules.items():
        value = get_key(cfg, key)
        try:
            ok = bool(check(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(f"  {key} = {value!r}; allowed: {allowed}")
    if problems:
        raise ConfigError(f"{source}: invalid config value(s):\n" + "\n".join(problems))


def merge_config(cfg, config_file=None, opts=(), *, rules=None, renamed=None):
    """Merge ``config_file`` (safe yaml, ``_BASE_`` allowed) and ``opts`` (``[KEY, VALUE, ...]``)
    into ``cfg``, turning yacs' errors into ones that say what to write: an unknown key a
    :class:`ConfigKeyError` with the closest known keys (or, for a key of ``renamed``, old key
    -> what to write instead, that advice), a wrong type a :class:`ConfigError` with the
    allowed words of ``rules``."""
    rules, renamed, opts = rules or {}, renamed or {}, list(opts or ())
    if len(opts) % 2:
        raise ConfigError(f"config overrides must be KEY VALUE pairs; got an odd list: {opts}")
    where = f"{config_file}: " if config_file else ""
    if config_file and not os.path.isfile(config_file):
        raise FileNotFoundError(f"{config_file}: no such config file")
    try:
        if config_file:
            # allow_unsafe=False: a yaml file must not construct Python objects (run code).
            cfg.merge_from_file(config_file, allow_unsafe=False)
        where = ""
        cfg.merge_from_list(opts)
    except (KeyError, AssertionError) as e:
        # yacs: KeyError "Non-existent config key: K" from a yaml, AssertionError
        # "Non-existent key: K" from the command line.
        text = str(e.args[0]) if e.args else str(e)
        if "Non-existent" not in text:
            raise
        key = text.rsplit(":", 1)[-1].strip()
        raise _unknown_key(cfg, key, where, renamed) from e
    except yaml.YAMLError as e:  # a yaml that does not parse, or tags that construct objects
        raise ConfigError(f"{where}not a valid config yaml: {str(e).splitlines()[0]}") from None
    except ValueError as e:
        # yacs: "Type mismatch (...) with values (...) for config key: KEY"
        key = str(e).rsplit("config key: ", 1)[-1].strip()
        if key in renamed:
            raise _unknown_key(cfg, key, where, renamed) from e
        if key in rules:
            raise ConfigError(f"{where}{e}; allowed: {rules[key][1]}") from e
        raise ConfigError(f"{where}{e}") from e
    return cfg


def _unknown_key(cfg, key, where, renamed):
    if key in renamed:
        return ConfigKeyError(f"{where}config key {key} is no longer used; {renamed[key]}")
    return ConfigKeyError(f"{where}Non-existent config key: {key}; closest known keys: "
                          f"{difflib.get_close_matches(key, list(_all_keys(cfg)), n=3, cutoff=0.6) or 'none'}")


def _all_keys(node, prefix=""):
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _all_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"
