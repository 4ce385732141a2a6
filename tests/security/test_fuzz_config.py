"""Property-based fuzzing of config.json (issue 13): whatever the config, minirun either
takes it or refuses it with one line naming what is wrong. Never a traceback, a hang, or
anything left behind.

Two layers, both from mutations of runc's default config (a value replaced by random
JSON, a key dropped, an unknown key added, a list grown):
- in process, the validation create runs (config.validate), FUZZ_EXAMPLES examples
  (1000 in `make test`, 20,000 in `make fuzz`): only ConfigError/MinirunError may leave it;
- for real, `create` + `delete --force` of FUZZ_RUNS mutated bundles (40 in `make test`):
  exit 0 or one clean line, and the leak guard checks that nothing is left.
"""

from __future__ import annotations

import copy
import json
import os

import pytest
from conftest import default_config

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
_UNIFIED = "/sys/fs/cgroup/unified/cgroup.controllers"
MEMORY_IN_V1 = os.path.exists(_UNIFIED) and "memory" not in open(_UNIFIED).read().split()
RUNS = int(os.environ.get("FUZZ_RUNS", "40"))

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                      st.floats(allow_nan=False, allow_infinity=False),
                      st.text(max_size=40),
                      st.sampled_from(["", "/", "..", "/proc", "rbind", "ro", "CAP_SYS_ADMIN",
                                       "RLIMIT_NOFILE", "RLIMIT_LOCKS", "SCMP_ACT_ALLOW", "c",
                                       "tmpfs", "1\n", "a\x00b", "net.ipv4.ip_forward"]),
                      st.sampled_from([-1, 0, 4294967294, 2147483647, 2**63, 2**64 - 1]))
json_value = st.recursive(json_leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=12), kids, max_size=4)),
    max_leaves=12)


def _paths(doc, prefix=()):
    """Every (path, value) of a JSON document."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _set(doc, path, value):
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value


def _delete(doc, path):
    for p in path[:-1]:
        doc = doc[p]
    del doc[path[-1]]


@st.composite
def mutated_configs(draw, base=None):
    cfg = copy.deepcopy(base or default_config(["true"]))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p, _ in _paths(cfg) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add", "grow"]))
        try:
            if action == "replace":
                _set(cfg, path, draw(json_value))
            elif action == "delete":
                _delete(cfg, path)
            elif action == "add":
                parent = cfg
                for p in path[:-1]:
                    parent = parent[p]
                if isinstance(parent, dict):
                    parent[draw(st.text(max_size=12))] = draw(json_value)
            else:
                parent = cfg
                for p in path[:-1]:
                    parent = parent[p]
                target = parent[path[-1]]
                if isinstance(target, list):
                    target.append(draw(json_value) if not target else copy.deepcopy(target[0]))
        except (KeyError, IndexError, TypeError):
            pass
    return cfg


@settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
          suppress_health_check=list(HealthCheck))
@given(mutated_configs())
def test_validation_refuses_cleanly(cfg):
    from minirun import config
    from minirun.errors import MinirunError

    try:
        config.validate(cfg)
    except MinirunError as e:
        text = str(e)
        assert text and "\n" not in text and "Traceback" not in text, text


@pytest.mark.minirun_only
def test_create_and_delete_of_mutated_bundles(runtime, bundle, cid):
    """Real creates: a small number of mutated configs, each created and force-deleted."""
    failures = []

    @settings(max_examples=RUNS, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    @given(mutated_configs())
    def one(cfg):
        c = cid("fz")
        b = bundle(["true"])
        res = (cfg.get("linux") or {}).get("resources") if isinstance(cfg.get("linux"),
                                                                       dict) else None
        if isinstance(res, dict) and MEMORY_IN_V1:
            res.pop("memory", None)  # the machine's v1 memory hierarchy is not ours
        (b / "config.json").write_text(json.dumps(cfg))
        r = runtime("create", "--bundle", b, c, timeout=30)
        err = r.stderr.strip()
        if r.returncode != 0 and (not err or len(err.splitlines()) != 1 or "Traceback" in err
                                  or "internal error" in err):
            failures.append((cfg, err))
        d = runtime("delete", "--force", c, timeout=30)
        if d.returncode != 0:
            failures.append((cfg, "delete --force: " + d.stderr))

    one()
    assert not failures, failures[:3]
