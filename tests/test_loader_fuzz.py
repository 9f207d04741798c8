"""Property tests on the loaders: any mutation of a valid scenario loads or fails cleanly."""
import copy

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import hetsim
from hetsim.errors import ConfigError

junk = st.one_of(st.none(), st.booleans(), st.integers(-10, 10 ** 6), st.floats(allow_nan=True),
                 st.text(max_size=12), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def paths(d, prefix=()):
    if isinstance(d, dict):
        for k, v in d.items():
            yield prefix + (k,)
            yield from paths(v, prefix + (k,))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_scenarios_load_or_raise_config_error(tmp_path, base_dict, data):
    d = copy.deepcopy(base_dict)
    all_paths = list(paths(d))
    path = data.draw(st.sampled_from(all_paths))
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    parent = d
    for k in path[:-1]:
        parent = parent[k]
    if action == "replace":
        parent[path[-1]] = data.draw(junk)
    elif action == "delete":
        del parent[path[-1]]
    else:
        parent[data.draw(st.text(min_size=1, max_size=8))] = data.draw(junk)
    f = tmp_path / "fuzz.yaml"
    f.write_text(yaml.safe_dump(d))
    try:
        hetsim.load_scenario(f)
    except ConfigError as e:
        msg = str(e)
        assert msg.startswith(str(f)) and "\n" not in msg


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_loader(tmp_path, text):
    f = tmp_path / "junk.yaml"
    f.write_text(text)
    try:
        hetsim.load_scenario(f)
    except ConfigError:
        pass
